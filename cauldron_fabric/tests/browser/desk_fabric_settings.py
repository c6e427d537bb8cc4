"""Fabric Settings in a browser: Test connection saves what was typed and says what it found."""

from __future__ import annotations

import frappe

from cauldron_fabric.testing.kafka_broker import KafkaBroker, create_topic, free_port
from cauldron_fabric.tests.browser.desk import DeskCase
from cauldron_fabric.tests.utils import fabric_settings


def stored_bootstrap_servers() -> str | None:
	"""Returns the bootstrap servers as committed (not this process's cached value)."""
	return frappe.db.get_single_value("Fabric Settings", "bootstrap_servers", cache=False)


class TestFabricSettingsTestConnection(DeskCase):
	def setUp(self):
		super().setUp()
		settings = fabric_settings(bootstrap_servers="")
		settings.__enter__()
		self.addCleanup(settings.__exit__, None, None, None)
		# Cleanups run last first: the settings are restored from what the form committed.
		self.addCleanup(self.committed)

	def press_test_connection(self, address: str) -> tuple[str, str]:
		"""Types ``address`` as the bootstrap servers, presses Test connection, returns the message."""
		self.desk.open_form("Fabric Settings")
		self.desk.type_into_field("bootstrap_servers", address)
		self.desk.click(f"{self.desk.field('test_connection')} button", "the Test connection button")
		return self.desk.message()

	def test_an_unreachable_broker_is_reported_with_what_to_check(self):
		address = f"127.0.0.1:{free_port()}"  # nothing listens there
		title, text = self.press_test_connection(address)
		self.assertEqual(title, "Connection failed")
		self.assertIn(f"No Kafka broker answered at {address}", text)
		self.assertIn("Check the bootstrap servers, the security protocol and the credentials", text)
		# The form saved what was typed before testing it: the answer is about the shown value.
		self.committed()
		self.assertEqual(stored_bootstrap_servers(), address)

	def test_a_running_broker_is_reported_with_its_brokers_and_topics(self):
		with KafkaBroker() as broker:
			topic = "fabric-browser-" + frappe.generate_hash(length=6)
			create_topic(broker.bootstrap, topic, 1)
			title, text = self.press_test_connection(broker.bootstrap)
		self.assertEqual(title, "Connected")
		self.assertIn("1 broker(s), 1 topic(s)", text)
		self.committed()
		self.assertEqual(stored_bootstrap_servers(), broker.bootstrap)
