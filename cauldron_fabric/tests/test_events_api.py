"""The event listing API as a reader who follows the Event Log page after page uses it."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import events as events_api
from cauldron_fabric.emit.recorder import new_envelope, record


class TestListEvents(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")

	def test_a_type_prefix_matches_underscores_literally(self):
		entity_id = frappe.generate_hash(length=10)
		record([new_envelope("fabric.probe.saved", "Fabric Probe", entity_id, "saved", {})])
		listed = events_api.list_events(event_type="fabric_probe.*", entity_id=entity_id)["events"]
		self.assertEqual(listed, [], "fabric_probe.* is not fabric.probe.*")
		listed = events_api.list_events(event_type="fabric.probe.*", entity_id=entity_id)["events"]
		self.assertEqual([e["envelope"]["type"] for e in listed], ["fabric.probe.saved"])
