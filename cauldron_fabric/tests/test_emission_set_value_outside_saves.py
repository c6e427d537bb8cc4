"""A frappe.db.set_value outside any save is an ``updated`` event of the stored document at once,
with ``via: set_value``: one per document it matched, read together, none for the same value,
gone with a rollback. db_set, which writes through set_value, stays one event of its own.

Frappe runs no document hook for it; the app wraps the method (emit/set_values.py).
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.set_values import watch_set_values
from cauldron_fabric.tests.test_emission_set_value_support import UPDATED, reads_of
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	ensure_custom_doctype,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
	payload,
	types_of,
)

NUMBERED = "Fabric Set Value Numbered"
TABLELESS = "Fabric Set Value Tableless"


# What before_request and before_job do: a test run alone has no document hook to import it.
watch_set_values()


class TestSetValueOutsideSaves(EmissionCase):
	def test_a_write_is_an_update_of_the_stored_document(self):
		order = new_order("set_value alone")
		start = last_seq()
		frappe.db.set_value(ORDER, order.name, {"note": "written directly", "grand_total": 99})
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(event["data"]["entityId"], order.name)
		self.assertEqual(payload(event)["via"], "set_value")
		self.assertEqual(
			payload(event)["changes"],
			{"note": {"old": None, "new": "written directly"}, "grand_total": {"old": 120.5, "new": 99.0}},
		)
		self.assertEqual(payload(event)["doc"]["note"], "written directly")
		# The whole document as stored goes with it, rows included.
		self.assertEqual([row["item"] for row in payload(event)["doc"]["items"]], ["cauldron", "ladle"])

	def test_a_write_of_the_same_value_records_nothing(self):
		order = new_order("same value", note="kept")
		start = last_seq()
		frappe.db.set_value(ORDER, order.name, "note", "kept")
		self.assertEqual(events_after(start, ORDER), [])

	def test_a_write_to_a_name_or_doctype_that_does_not_exist_leaves_no_message(self):
		# Frappe's write to a missing name changes nothing and says nothing, and one to a missing
		# DocType raises the database's error: the reads before it must not leave a "not found"
		# message that the response shows the user as an error dialog.
		frappe.clear_messages()
		start = last_seq()
		frappe.db.set_value(ORDER, "fabric-no-such-order", "note", "nowhere")
		frappe.db.set_value(ORDER_ITEM, "fabric-no-such-row", "qty", 3)
		frappe.get_doc({"doctype": ORDER, "name": "fabric-no-such-order", "title": "t"}).db_update()
		with self.assertRaises(Exception) as raised:
			frappe.db.set_value("Fabric No Such DocType", "a", "note", "nowhere")
		self.assertTrue(frappe.db.is_table_missing(raised.exception))
		self.assertEqual(frappe.get_message_log(), [])
		self.assertEqual(events_after(start, ORDER), [])

	def test_a_write_to_a_doctype_whose_table_is_missing_raises_the_databases_error(self):
		# A patch may write to a DocType whose table a later sync creates, and catch the error
		# that says so (frappe.db.is_table_missing): the fabric's read before the write must
		# raise nothing else, and leave the write to raise its own error.
		ensure_custom_doctype(TABLELESS, [{"fieldname": "note", "fieldtype": "Data", "label": "Note"}])
		frappe.db.commit()
		frappe.db.sql_ddl(f"DROP TABLE IF EXISTS `tab{TABLELESS}`")
		frappe.cache.hdel("table_columns", f"tab{TABLELESS}")
		try:
			writes = {
				"set_value by name": lambda: frappe.db.set_value(TABLELESS, "a", "note", "x"),
				"set_value by filters": lambda: frappe.db.set_value(TABLELESS, {"note": "y"}, "note", "x"),
				"db_update": lambda: frappe.get_doc({"doctype": TABLELESS, "name": "a"}).db_update(),
			}
			for label, write in writes.items():
				with self.subTest(label):
					with self.assertRaises(Exception) as raised:
						write()
					self.assertTrue(frappe.db.is_table_missing(raised.exception), raised.exception)
		finally:
			frappe.db.updatedb(TABLELESS)

	def test_a_write_by_filters_is_one_event_per_document_it_matched(self):
		tag = frappe.generate_hash(length=8)
		first, second = new_order(tag), new_order(tag)
		new_order(f"{tag}-other")
		start = last_seq()
		frappe.db.set_value(ORDER, {"title": tag}, "note", "bulk note")
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [UPDATED, UPDATED])
		self.assertEqual({e["data"]["entityId"] for e in events}, {first.name, second.name})
		self.assertEqual({payload(e)["changes"]["note"]["new"] for e in events}, {"bulk note"})

	def test_a_write_reads_its_documents_once_after_it_all_at_once(self):
		# Before the write only the values it replaces are read, for all documents at once: a
		# patch writing thousands of documents by filters holds no thousands of documents in
		# memory, nor reads each twice. After it, the documents are read together: one query
		# per table (stored_documents), not one per document and table.
		tag = frappe.generate_hash(length=8)
		orders = [new_order(tag) for _ in range(3)]
		start = last_seq()
		with reads_of(ORDER_ITEM) as rows_read, reads_of(ORDER) as orders_read:
			frappe.db.set_value(ORDER, {"title": tag}, {"note": "bulk note", "grand_total": 7})
		self.assertEqual(len(rows_read), 1)
		self.assertEqual(len(orders_read), 2)
		events = events_after(start, ORDER)
		self.assertEqual({e["data"]["entityId"] for e in events}, {order.name for order in orders})
		for event in events:
			self.assertEqual(
				payload(event)["changes"],
				{"note": {"old": None, "new": "bulk note"}, "grand_total": {"old": 120.5, "new": 7.0}},
			)

	def test_a_write_by_a_list_of_names_or_by_the_value_it_changes(self):
		tag = frappe.generate_hash(length=8)
		first, second = new_order(tag), new_order(tag)
		start = last_seq()
		frappe.db.set_value(ORDER, [first.name, second.name], "note", "listed")
		# The filters name the field written: the documents they matched before the write count.
		frappe.db.set_value(ORDER, {"note": "listed", "title": tag}, "note", "moved on")
		events = events_after(start, ORDER)
		self.assertEqual(
			sorted((payload(e)["changes"]["note"]["new"], e["data"]["entityId"]) for e in events),
			sorted((note, name) for note in ("listed", "moved on") for name in (first.name, second.name)),
		)

	def test_an_autoincrement_name_given_as_a_number_or_a_string(self):
		ensure_custom_doctype(
			NUMBERED,
			[{"fieldname": "title", "fieldtype": "Data", "label": "Title"}],
			autoname="autoincrement",
		)
		doc = frappe.get_doc({"doctype": NUMBERED, "title": "first"}).insert()
		start = last_seq()
		frappe.db.set_value(NUMBERED, doc.name, "title", "by number")
		frappe.db.set_value(NUMBERED, str(doc.name), "title", "by string")
		events = events_after(start, NUMBERED)
		self.assertEqual([e["data"]["entityId"] for e in events], [str(doc.name)] * 2)
		self.assertEqual(
			[payload(e)["changes"]["title"] for e in events],
			[{"old": "first", "new": "by number"}, {"old": "by number", "new": "by string"}],
		)

	def test_db_set_stays_one_event_of_its_own(self):
		order = new_order("db_set")
		start = last_seq()
		order.db_set("note", "by db_set")
		(event,) = events_after(start, ORDER)
		self.assertEqual(payload(event)["via"], "db_set")
		self.assertEqual(payload(event)["changes"], {"note": {"old": None, "new": "by db_set"}})

	def test_a_rollback_takes_the_event_with_the_write(self):
		order = new_order("rolled back")
		frappe.db.commit()
		start = last_seq()
		frappe.db.savepoint("fabric_set_value")
		frappe.db.set_value(ORDER, order.name, "note", "undone by a savepoint")
		frappe.db.rollback(save_point="fabric_set_value")
		frappe.db.set_value(ORDER, order.name, "title", "kept")
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(payload(event)["changes"], {"title": {"old": "rolled back", "new": "kept"}})
		frappe.db.set_value(ORDER, order.name, "note", "undone by a rollback")
		frappe.db.rollback()
		self.assertEqual(len(events_after(start, ORDER)), 1)

	def test_a_write_to_a_denied_doctype_records_nothing(self):
		order = new_order("denied")
		with fabric_settings(denied_doctypes=[{"document_type": ORDER}]):
			start = last_seq()
			frappe.db.set_value(ORDER, order.name, "note", "not told")
			self.assertEqual(events_after(start, ORDER), [])
