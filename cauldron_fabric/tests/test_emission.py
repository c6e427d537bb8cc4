"""Document work on a real site becomes events in the Event Log, in the same transaction."""

from __future__ import annotations

import json

import frappe

from cauldron_fabric.tests.utils import (
	ORDER,
	SQL_LOOKALIKE_TEXT,
	EmissionCase,
	events_after,
	new_order,
	order_import,
	types_of,
)


class TestDocumentEvents(EmissionCase):
	"""A document's lifecycle, in the transaction that makes it, is the events it should be."""

	def test_rolled_back_transaction_records_nothing(self):
		frappe.db.commit()
		new_order("doomed")
		self.assertEqual(len(events_after(self.start, ORDER)), 1)
		frappe.db.rollback()
		self.assertEqual(events_after(self.start), [])

	def test_savepoint_rollback_drops_only_the_events_after_it(self):
		kept = new_order("kept")
		frappe.db.savepoint("fabric_test")
		new_order("dropped")
		frappe.db.rollback(save_point="fabric_test")
		self.assertEqual([e["data"]["entityId"] for e in events_after(self.start, ORDER)], [kept.name])

	def test_lifecycle_yields_the_right_events_in_order(self):
		order = new_order("lifecycle")
		order.title = "lifecycle v2"
		order.save()
		order.submit()
		order.note = "after submit"
		order.save()
		order.cancel()
		new_name = frappe.rename_doc(ORDER, order.name, order.name + "-renamed")
		frappe.delete_doc(ORDER, new_name)
		events = events_after(self.start, ORDER)
		self.assertEqual(
			types_of(events),
			[
				"fabric_test_order.created",
				"fabric_test_order.updated",
				"fabric_test_order.submitted",
				"business.transaction",
				"fabric_test_order.updated_after_submit",
				"fabric_test_order.cancelled",
				"business.transaction",
				"fabric_test_order.renamed",
				"fabric_test_order.deleted",
			],
		)
		created, updated, submitted, business, after_submit, *_rest, renamed, deleted = events
		self.assertEqual(created["data"]["action"], "created")
		self.assertEqual(
			[row["item"] for row in created["data"]["payload"]["doc"]["items"]], ["cauldron", "ladle"]
		)
		self.assertEqual(
			updated["data"]["payload"]["changes"], {"title": {"old": "lifecycle", "new": "lifecycle v2"}}
		)
		self.assertEqual(submitted["data"]["payload"]["doc"]["docstatus"], 1)
		self.assertEqual(business["data"]["action"], "submitted")
		self.assertEqual(business["data"]["payload"]["grand_total"], 120.5)
		self.assertEqual(business["data"]["payload"]["company"], "Cauldron Ltd")
		self.assertEqual(
			after_submit["data"]["payload"]["changes"]["note"], {"old": None, "new": "after submit"}
		)
		self.assertEqual(renamed["data"]["entityId"], new_name)
		self.assertEqual(renamed["data"]["payload"]["oldName"], order.name)
		self.assertEqual(deleted["data"]["entityId"], new_name)
		self.assertEqual({e["data"]["entity"] for e in events}, {ORDER})

	def test_document_text_reaches_the_outbox_unaltered(self):
		# Frappe's frappe.db.sql turns "ifnull(" into "coalesce(" anywhere in a query, and the
		# outbox INSERT carries the envelope as a literal: the text must survive both.
		order = new_order(SQL_LOOKALIKE_TEXT)
		order.note = SQL_LOOKALIKE_TEXT
		order.save()
		stored = frappe.db.get_value(ORDER, order.name, "title")
		self.assertIn("IFNULL(", stored)
		created, updated = events_after(self.start, ORDER)
		self.assertEqual(created["data"]["payload"]["doc"]["title"], stored)
		self.assertEqual(updated["data"]["payload"]["changes"]["note"]["new"], SQL_LOOKALIKE_TEXT)

	def test_event_text_reaches_the_outbox_unaltered_without_backslash_escapes(self):
		# Under NO_BACKSLASH_ESCAPES a backslash is an ordinary character in a literal and \' ends
		# it: the outbox INSERT must write its literals for the mode of the connection.
		from cauldron_fabric.emit.recorder import new_envelope, record

		mode = frappe.db.sql("SELECT @@SESSION.sql_mode")[0][0]
		self.addCleanup(frappe.db.sql, "SET SESSION sql_mode = %s", (mode,))
		frappe.db.sql("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
		envelope = new_envelope("probe.noted", "Probe", "T-'\\", "noted", {"note": SQL_LOOKALIKE_TEXT})
		record([envelope])
		stored = frappe.db.get_value("Event Log", {"event_id": envelope.id}, ["entity_id", "envelope"])
		self.assertEqual(stored[0], "T-'\\")
		self.assertEqual(json.loads(stored[1])["data"]["payload"]["note"], SQL_LOOKALIKE_TEXT)

	def test_db_set_is_emitted_with_its_change(self):
		order = new_order("db_set")
		order.db_set("note", "set directly")
		event = events_after(self.start, ORDER)[-1]
		self.assertEqual(event["type"], "fabric_test_order.updated")
		self.assertEqual(event["data"]["payload"]["via"], "db_set")
		self.assertEqual(event["data"]["payload"]["changes"], {"note": {"old": None, "new": "set directly"}})

	def test_a_save_that_changes_nothing_is_not_an_event(self):
		order = new_order("same")
		order.save()
		self.assertEqual(types_of(events_after(self.start, ORDER)), ["fabric_test_order.created"])

	def test_changes_made_by_patches_are_emitted(self):
		frappe.flags.in_patch = True
		try:
			order = new_order("from a patch")
		finally:
			frappe.flags.in_patch = False
		self.assertEqual(events_after(self.start, ORDER)[0]["data"]["entityId"], order.name)

	def test_data_import_emits_one_event_per_imported_row(self):
		from frappe.core.doctype.data_import.data_import import start_import

		data_import = order_import("Title,Grand Total\nimported one,10\nimported two,20\n")
		start_import(data_import.name)
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), ["fabric_test_order.created"] * 2)
		self.assertEqual(
			sorted(e["data"]["payload"]["doc"]["title"] for e in events), ["imported one", "imported two"]
		)
