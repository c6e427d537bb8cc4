"""Event metadata: the acting user, the site, the conversation (correlation and causation ids)."""

from __future__ import annotations

import frappe
from frappe.utils import now_datetime

from cauldron_fabric.emit.context import caused_by
from cauldron_fabric.tests.utils import ORDER, EmissionCase, events_after, new_order


class TestMetadata(EmissionCase):
	"""Every event names who acted, on which site, in which conversation."""

	def test_metadata_names_user_site_and_conversation(self):
		with caused_by("cause-event-id", "conversation-1"):
			order = new_order("caused")
		event = events_after(self.start, ORDER, order.name)[0]
		self.assertEqual(
			event["metadata"],
			{
				"correlationId": "conversation-1",
				"causationId": "cause-event-id",
				"userId": "Administrator",
				"tenantId": frappe.local.site,
			},
		)
		self.assertEqual(event["source"], f"frappe://{frappe.local.site}")
		self.assertEqual(event["specVersion"], "1.0")

	def test_a_consumed_conversation_id_too_long_to_keep_is_replaced(self):
		# Another module's event may carry any correlationId; the Event Log keeps 140 characters.
		with caused_by("cause-event-id", "c" * 300):
			order = new_order("long conversation")
		metadata = events_after(self.start, ORDER, order.name)[0]["metadata"]
		self.assertEqual(metadata["causationId"], "cause-event-id")
		self.assertTrue(0 < len(metadata["correlationId"]) <= 140, metadata["correlationId"])

	def test_a_consumed_conversation_id_with_markup_is_replaced(self):
		# A consumed event comes from any producer on the bus, not only through the publish API;
		# the Event Log's correlation_id column, written by SQL, is rendered by Desk as HTML.
		with caused_by("cause-event-id", "<img src=x onerror=alert(1)>"):
			order = new_order("marked-up conversation")
		metadata = events_after(self.start, ORDER, order.name)[0]["metadata"]
		self.assertEqual(metadata["causationId"], "cause-event-id")
		self.assertNotRegex(metadata["correlationId"], "[<>]")
		stored = frappe.db.get_all("Event Log", {"entity_id": order.name}, pluck="correlation_id")
		self.assertEqual(stored, [metadata["correlationId"]])

	def test_every_event_of_a_request_shares_one_correlation_id(self):
		frappe.local.fabric_correlation_id = None
		new_order("first")
		new_order("second")
		ids = {e["metadata"]["correlationId"] for e in events_after(self.start, ORDER)}
		self.assertEqual(len(ids), 1)
		self.assertNotIn(None, ids)

	def test_event_rows_are_stamped_on_the_sites_clock_as_its_time_zone_changes(self):
		# A changed time zone must apply to the next event's stamp.
		def set_zone(name: str) -> None:
			frappe.db.set_single_value("System Settings", "time_zone", name)
			frappe.clear_document_cache("System Settings", "System Settings")
			if hasattr(frappe.local, "system_settings"):
				del frappe.local.system_settings

		self.addCleanup(set_zone, frappe.db.get_single_value("System Settings", "time_zone"))
		for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"):  # UTC+14, UTC-11, UTC
			set_zone(zone)
			before = now_datetime()
			order = new_order(f"stamped in {zone}")
			after = now_datetime()
			stamp = frappe.db.get_value("Event Log", {"entity_id": order.name}, "creation")
			self.assertTrue(before <= stamp <= after, f"{zone}: {stamp} not within {before}..{after}")
