"""A document as large as the database takes saves, whatever its events weigh."""

from __future__ import annotations

import json

import frappe

from cauldron_fabric.tests.test_delivery_support import make_subscription, marker, remove_subscription
from cauldron_fabric.tests.utils import EmissionCase, ensure_custom_doctype, events_after

LARGE_PROBE = "Fabric Large Probe"
LARGE_FIELDS = [
	{"fieldname": "title", "fieldtype": "Data", "label": "Title"},
	{"fieldname": "body", "fieldtype": "Long Text", "label": "Body", "allow_on_submit": 1},
]


def packet_limit() -> int:
	return int(frappe.db.sql("SELECT @@max_allowed_packet")[0][0])


def statuses_after(seq: int) -> list[tuple[str, str, str | None]]:
	return [
		tuple(row)
		for row in frappe.db.sql(
			"SELECT event_type, status, last_error FROM `tabEvent Log` WHERE entity = %s AND name > %s "
			"ORDER BY name",
			(LARGE_PROBE, seq),
		)
	]


class TestLargeDocuments(EmissionCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_custom_doctype(LARGE_PROBE, LARGE_FIELDS, is_submittable=1, autoname="hash")
		frappe.db.commit()

	def tearDown(self):
		frappe.db.rollback()

	def test_events_too_large_together_are_written_one_by_one(self):
		# Submitting gives two events that each carry the document: together they exceed what
		# one statement may hold, each alone fits.
		body = "x" * int(packet_limit() * 0.55)
		probe = frappe.get_doc({"doctype": LARGE_PROBE, "title": "large", "body": body}).insert()
		probe.submit()
		events = events_after(self.start, LARGE_PROBE)
		self.assertEqual(
			[event["type"] for event in events],
			["fabric_large_probe.created", "fabric_large_probe.submitted", "business.transaction"],
		)
		self.assertEqual([event["data"]["payload"]["doc"]["body"] for event in events], [body] * 3)
		self.assertNotIn("Invalid", [status for _, status, _ in statuses_after(self.start)])

	def test_an_event_too_large_for_the_database_is_kept_without_its_payload(self):
		# An update carries the document and the old and new body: three times what Frappe wrote.
		size = int(packet_limit() * 0.4)
		probe = frappe.get_doc({"doctype": LARGE_PROBE, "title": "large", "body": "x" * size}).insert()
		probe.body = "y" * size
		probe.save()
		self.assertEqual(frappe.db.get_value(LARGE_PROBE, probe.name, "body"), "y" * size)
		created, updated = statuses_after(self.start)
		self.assertNotEqual(created[1], "Invalid")
		self.assertEqual(updated[:2], ("fabric_large_probe.updated", "Invalid"))
		self.assertIn("max_allowed_packet", updated[2])
		event = events_after(self.start, LARGE_PROBE)[1]
		self.assertEqual((event["data"]["entityId"], event["data"]["action"]), (str(probe.name), "updated"))
		self.assertNotIn("doc", event["data"]["payload"])

	def test_an_event_matched_by_several_subscriptions_is_queued_for_each_whatever_its_size(self):
		# Each delivery row carries the event: three of them exceed what one statement may
		# hold, each alone fits, and the save must not fail for it.
		tag = marker()
		names = [
			make_subscription(
				tag, event_types="fabric_large_probe.*", condition="", webhook_url="https://example.com/hook"
			).name
			for _ in range(3)
		]
		for name in names:
			self.addCleanup(remove_subscription, name)
		body = "x" * int(packet_limit() * 0.4)
		probe = frappe.get_doc({"doctype": LARGE_PROBE, "title": tag, "body": body}).insert()
		(event,) = events_after(self.start, LARGE_PROBE)
		queued = frappe.db.sql(
			"SELECT subscription, envelope FROM `tabEvent Delivery` WHERE event_id = %s ORDER BY subscription",
			(event["id"],),
		)
		self.assertEqual([row[0] for row in queued], sorted(names))
		self.assertEqual([json.loads(row[1])["data"]["payload"]["doc"]["body"] for row in queued], [body] * 3)
		self.assertEqual(frappe.db.get_value(LARGE_PROBE, probe.name, "body"), body)
