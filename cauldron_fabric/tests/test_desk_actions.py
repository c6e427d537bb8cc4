"""What an admin's clicks in Desk get back: clear messages, never a Server Error."""

from __future__ import annotations

import json

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.core.envelope import Envelope, EventData, EventMetadata, new_event_id, utc_now_iso
from cauldron_fabric.tests.utils import fabric_settings


def consumer_dead_letter() -> frappe.model.document.Document:
	"""Files the Dead Letter a Kafka consumer leaves for an event whose handler kept failing."""
	envelope = Envelope(
		id=new_event_id(),
		type="fabric_desk_test.charge.created",
		source="urn:cauldron:billing",
		time=utc_now_iso(),
		data=EventData("Charge", "CH-1", "created", {"amount": 1}),
		metadata=EventMetadata(new_event_id()),
	)
	return frappe.get_doc(
		{
			"doctype": "Dead Letter",
			"source_type": "Consumer",
			"status": "Dead",
			"consumer_group": "desk-test-group",
			"reference": f"desk-test/0/{frappe.generate_hash(length=8)}",
			"event_id": envelope.id,
			"event_type": envelope.type,
			"attempts": 2,
			"last_error": "ledger closed",
			"error_class": "RuntimeError",
			"attempt_log": json.dumps({"reason": "handler-failed", "broker": "kafka"}),
			"origin_topic": "desk-test",
			"envelope": envelope.to_json(),
		}
	).insert(ignore_permissions=True)


class TestDeadLetterButtons(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")

	def test_retrying_a_consumer_letter_without_a_broker_says_what_to_set(self):
		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			letter = consumer_dead_letter()
			self.addCleanup(frappe.db.commit)
			self.addCleanup(frappe.db.delete, "Dead Letter", {"name": letter.name})
			# The form's Retry button (run_doc_method): a ValidationError is a message in Desk,
			# anything else a Server Error (HTTP 500) naming the exception class.
			with self.assertRaises(frappe.ValidationError) as raised:
				letter.retry()
		self.assertIn("Fabric Settings", str(raised.exception))
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Dead")
