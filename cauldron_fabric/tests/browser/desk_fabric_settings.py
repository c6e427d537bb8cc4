"""Fabric Settings in a browser: the Test connection buttons save what was typed and say what they found."""

from __future__ import annotations

import uuid

import frappe
from frappe.utils.password import get_decrypted_password

from cauldron_fabric.testing.kafka_broker import KafkaBroker, create_topic, free_port
from cauldron_fabric.testing.rabbitmq import PASSWORD, SETTINGS_URL, RabbitMQ
from cauldron_fabric.tests.browser.desk import DeskCase
from cauldron_fabric.tests.utils import fabric_settings


def stored_bootstrap_servers() -> str | None:
	"""Returns the bootstrap servers as committed (not this process's cached value)."""
	return frappe.db.get_single_value("Fabric Settings", "bootstrap_servers", cache=False)


def stored_rabbitmq() -> tuple[str | None, str | None]:
	"""Returns the RabbitMQ URL and password as committed."""
	url = frappe.db.get_single_value("Fabric Settings", "rabbitmq_url", cache=False)
	password = get_decrypted_password(
		"Fabric Settings", "Fabric Settings", "rabbitmq_password", raise_exception=False
	)
	return url, password


class TestFabricSettingsTestConnection(DeskCase):
	def setUp(self):
		super().setUp()
		self.exchange = "fabric.browser." + uuid.uuid4().hex[:6]
		settings = fabric_settings(
			bootstrap_servers="", rabbitmq_url="", rabbitmq_password="", rabbitmq_exchange=self.exchange
		)
		settings.__enter__()
		self.addCleanup(settings.__exit__, None, None, None)
		# Cleanups run last first: the settings are restored from what the form committed.
		self.addCleanup(self.committed)

	def press_test_connection(self, address: str) -> tuple[str, str]:
		"""Types ``address`` as the bootstrap servers, presses Test connection, returns the message."""
		self.desk.open_form("Fabric Settings")
		self.desk.type_into_field("bootstrap_servers", address)
		return self.press("test_connection")

	def press_test_rabbitmq_connection(self, url: str, password: str) -> tuple[str, str]:
		"""Types the RabbitMQ URL and password, presses Test RabbitMQ connection, returns the message."""
		self.desk.open_form("Fabric Settings")
		self.desk.type_into_field("rabbitmq_url", url)
		self.desk.type_into_field("rabbitmq_password", password)
		return self.press("test_rabbitmq_connection")

	def press(self, button: str) -> tuple[str, str]:
		"""Presses the form's Button field ``button`` and returns the message it shows."""
		self.desk.click(f"{self.desk.field(button)} button", f"the {button} button")
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

	def test_the_machines_rabbitmq_is_reported_with_its_version_and_exchange(self):
		rabbit = RabbitMQ()
		self.addCleanup(rabbit.close)
		self.addCleanup(rabbit.delete, (), (self.exchange,))
		rabbit.channel.exchange_declare(self.exchange, "topic", durable=True)
		title, text = self.press_test_rabbitmq_connection(SETTINGS_URL, PASSWORD)
		self.assertEqual(title, "Connected")
		self.assertRegex(text, r"Connected to RabbitMQ [0-9.]+ at 127\.0\.0\.1:5672, vhost '/'")
		# The exchange the test declared on the broker is found there.
		self.assertIn(f"exchange '{self.exchange}' exists", text)
		self.committed()
		self.assertEqual(stored_rabbitmq(), (SETTINGS_URL, PASSWORD))

	def test_a_wrong_port_or_password_is_reported_with_what_to_check(self):
		port = free_port()  # nothing listens there
		title, text = self.press_test_rabbitmq_connection(f"amqp://guest@127.0.0.1:{port}/%2F", "guest")
		self.assertEqual(title, "Connection failed")
		self.assertIn(f"No RabbitMQ broker answered at 127.0.0.1:{port}", text)
		self.assertIn("Check the host, the port and that the broker runs", text)
		self.assertNotIn("Traceback", text)
		self.desk.close_message()

		title, text = self.press_test_rabbitmq_connection(SETTINGS_URL, "not-the-password")
		self.assertEqual(title, "Connection failed")
		self.assertIn("RabbitMQ at 127.0.0.1:5672 (vhost '/') refused user 'guest'", text)
		self.assertIn("Check the user name and password in Fabric Settings", text)
		self.assertNotIn("Traceback", text)
		self.assertNotIn("not-the-password", text)
		self.committed()
		self.assertEqual(stored_rabbitmq(), (SETTINGS_URL, "not-the-password"))
