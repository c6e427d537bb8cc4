"""Raw SQL writes to Singles' values (``tabSingles``) are each Single's update with ``via: sql``
(a Single is settings: ``system.change``); Frappe's own writes of that table stay their own
events (emit/sql_singles.py)."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.utils import ensure_custom_doctype, events_after, last_seq, payload

PANEL = "Fabric Test Panel"
OTHER = "Fabric Test Dial"

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


def changes_of(events: list[dict]) -> list[tuple[str, dict]]:
	"""Returns each event's entity and changes, checking that each is a raw SQL system change."""
	for event in events:
		assert (event["type"], payload(event)["via"]) == ("system.change", "sql"), event
	return [(event["data"]["entity"], payload(event)["changes"]) for event in events]


class TestRawSinglesWrites(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		fields = [
			{"fieldname": "limit", "fieldtype": "Int", "label": "Limit"},
			{"fieldname": "mode", "fieldtype": "Data", "label": "Mode"},
		]
		ensure_custom_doctype(PANEL, fields, issingle=1)
		ensure_custom_doctype(OTHER, fields[:1], issingle=1)
		frappe.db.commit()

	def setUp(self):
		frappe.set_user("Administrator")
		frappe.db.set_single_value(PANEL, {"limit": 1, "mode": "calm"})
		frappe.db.set_single_value(OTHER, "limit", 1)
		frappe.db.commit()
		self.start = last_seq()

	def events(self) -> list[dict]:
		return [e for e in events_after(self.start) if e["data"]["entity"] in (PANEL, OTHER)]

	def test_an_update_of_a_singles_value_is_its_update(self):
		frappe.db.sql(
			"UPDATE `tabSingles` SET value = %s WHERE doctype = %s AND field = 'limit'", ("5", PANEL)
		)
		self.assertEqual(changes_of(self.events()), [(PANEL, {"limit": {"old": 1, "new": 5}})])

	def test_one_statement_over_two_singles_is_each_ones_update(self):
		frappe.db.sql(
			"UPDATE tabSingles SET value = '7' WHERE field = 'limit' AND doctype IN (%s, %s)", (PANEL, OTHER)
		)
		self.assertEqual(
			sorted(changes_of(self.events()), key=lambda change: change[0]),
			[(OTHER, {"limit": {"old": 1, "new": 7}}), (PANEL, {"limit": {"old": 1, "new": 7}})],
		)

	def test_an_insert_and_a_delete_of_values_are_updates(self):
		frappe.db.sql("DELETE FROM `tabSingles` WHERE doctype = %s AND field = 'mode'", (PANEL,))
		frappe.db.sql(
			"INSERT INTO `tabSingles` (doctype, field, value) VALUES (%s, 'mode', 'stormy')", (PANEL,)
		)
		self.assertEqual(
			changes_of(self.events()),
			[
				(PANEL, {"mode": {"old": "calm", "new": None}}),
				(PANEL, {"mode": {"old": None, "new": "stormy"}}),
			],
		)

	def test_a_write_that_changes_nothing_and_a_rollback_record_nothing(self):
		frappe.db.sql("UPDATE tabSingles SET value = '1' WHERE doctype = %s AND field = 'limit'", (PANEL,))
		self.assertEqual(self.events(), [])
		frappe.db.sql("UPDATE tabSingles SET value = '3' WHERE doctype = %s AND field = 'limit'", (PANEL,))
		frappe.db.rollback()
		self.assertEqual(self.events(), [])
		self.assertEqual(frappe.db.get_single_value(PANEL, "limit"), 1)

	def test_an_insert_of_selected_values_runs_and_is_logged(self):
		frappe.db.sql("DELETE FROM `tabSingles` WHERE doctype = %s AND field = 'mode'", (OTHER,))
		self.start = last_seq()
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			frappe.db.sql(
				"INSERT INTO tabSingles (doctype, field, value) SELECT %s, field, value FROM tabSingles "
				"WHERE doctype = %s AND field = 'mode'",
				(OTHER, PANEL),
			)
		copied = frappe.db.sql("SELECT value FROM tabSingles WHERE doctype = %s AND field = 'mode'", (OTHER,))
		self.assertEqual(copied, (("calm",),))
		self.assertEqual(self.events(), [])
		self.assertIn("records no event for this INSERT", logged.output[0])

	def test_frappes_own_writes_of_the_table_stay_one_event_each(self):
		# A Single's save rewrites its rows raw (update_single), set_single_value with the query
		# builder: each is one event, its own, not a second one from the raw SQL capture.
		panel = frappe.get_single(PANEL)
		panel.limit = 2
		panel.save()
		frappe.db.set_single_value(PANEL, "mode", "busy")
		events = self.events()
		self.assertEqual([e["type"] for e in events], ["system.change", "system.change"])
		self.assertEqual([payload(e).get("via") for e in events], [None, "set_value"])
