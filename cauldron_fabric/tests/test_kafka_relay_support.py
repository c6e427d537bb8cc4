"""What the Kafka relay test modules share: a broker per test class, and the relay run until idle."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.services.relay import run_relay_for
from cauldron_fabric.tests.utils import ensure_test_doctypes, start_broker


def event_status(entity_id: str) -> list[tuple]:
	frappe.db.rollback()  # read what other connections committed
	return frappe.db.sql(
		"SELECT event_type, status, topic, last_error FROM `tabEvent Log` WHERE entity_id = %s ORDER BY name",
		(entity_id,),
	)


def relay_until_idle(seconds: float = 30) -> None:
	run_relay_for(max_seconds=seconds, stop_when_idle=True)
	frappe.db.rollback()


class KafkaRelayCase(FrappeTestCase):
	"""A real Kafka-protocol broker for the class; each test starts with the outbox relayed."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_test_doctypes()
		start_broker(cls, prefix="fabrictest")

	def setUp(self):
		frappe.set_user("Administrator")
		relay_until_idle()  # leftovers of other tests must not mix with this one's events
