"""A set_value, or a row's db_update, is never refused for the event the fabric adds: under a
schema that allows ``via: db_set`` only, its event is stored Invalid and the write stands.
"""

from __future__ import annotations

import copy

import frappe

from cauldron_fabric.emit.rows import record_row_changes
from cauldron_fabric.emit.set_values import watch_set_values
from cauldron_fabric.registry import subjects, versions
from cauldron_fabric.registry.doctypes import derived_schemas
from cauldron_fabric.tests.test_emission_set_value_support import UPDATED
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
	payload,
)

# What before_request and before_job do: a test run alone has no document hook to import it.
watch_set_values()


class TestSetValueAgainstOlderSchemas(EmissionCase):
	def test_a_write_is_never_refused_for_its_event(self):
		# Until the migrate registers the derived schemas that allow ``via: set_value`` (and for
		# good where a subject's mode refuses them), the latest schema allows db_set only: a
		# write that Frappe itself checks nothing on must not fail for the event the fabric adds.
		order = new_order("older schema")
		frappe.db.commit()
		schema = copy.deepcopy(derived_schemas(ORDER)[UPDATED])
		schema["properties"]["via"]["enum"] = ["db_set"]
		row = order.items[0]
		with fabric_settings(invalid_event_policy="Reject"):
			try:
				subjects.set_subject_mode(UPDATED, "NONE")
				versions.register_schema(UPDATED, schema)
				start = last_seq()
				frappe.db.set_value(ORDER, order.name, "note", "written anyway")
				frappe.db.set_value(ORDER_ITEM, row.name, "qty", 4)
				record_row_changes()  # what the commit runs first, without committing the schema
				self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), "written anyway")
				events = events_after(start, ORDER)
				self.assertEqual([payload(e)["via"] for e in events], ["set_value", "set_value"])
				stored = frappe.get_all(
					"Event Log",
					filters={"event_id": ("in", [e["id"] for e in events])},
					fields=["status", "last_error"],
				)
				self.assertEqual([entry.status for entry in stored], ["Invalid", "Invalid"])
				self.assertTrue(all("via" in entry.last_error for entry in stored))
				# A db_set's own event is judged as before: this schema refuses it nothing.
				order.db_set("note", "by db_set")
				self.assertNotEqual(frappe.db.get_value("Event Log", last_seq(), "status"), "Invalid")
			finally:
				frappe.db.rollback()

	def test_a_rows_db_update_is_never_refused_for_its_event(self):
		# A row written with db_update is its parent's update at commit, like a row's set_value:
		# under the same older schema, the commit must not fail for the event the fabric adds.
		order = new_order("older schema, row")
		frappe.db.commit()
		schema = copy.deepcopy(derived_schemas(ORDER)[UPDATED])
		schema["properties"]["via"]["enum"] = ["db_set"]
		with fabric_settings(invalid_event_policy="Reject"):
			try:
				subjects.set_subject_mode(UPDATED, "NONE")
				versions.register_schema(UPDATED, schema)
				start = last_seq()
				row = frappe.get_doc(ORDER_ITEM, order.items[0].name)
				row.qty = 9
				row.db_update()
				record_row_changes()  # what the commit runs first, without committing the schema
				(event,) = events_after(start, ORDER)
				self.assertEqual(payload(event)["via"], "db_update")
				self.assertEqual(
					frappe.db.get_value("Event Log", {"event_id": event["id"]}, "status"), "Invalid"
				)
			finally:
				frappe.db.rollback()
