"""Writes of many documents at once (a raw SQL statement over a table, a set_value by filters,
a bulk insert) read their documents many at a time and write their events together
(``document_events.stored_documents``, ``recorder.recorded_together``): the same events as one
document at a time, in a few queries instead of a few per document.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.changes import document_payload
from cauldron_fabric.emit.document_events import stored_document, stored_documents
from cauldron_fabric.emit.recorder import new_envelope, record, recorded_together
from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.test_emission_flows import NUMBERED_BASKET, new_numbered_basket
from cauldron_fabric.tests.test_emission_sql import TABLE, UPDATED
from cauldron_fabric.tests.test_emission_sql_many_support import chunks_of, outbox_inserts_run, selects_run
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	events_after,
	last_seq,
	new_order,
	payload,
)

DELETED = "fabric_test_order.deleted"
CREATED = "fabric_test_order.created"


# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


class TestDocumentsReadTogether(EmissionCase):
	def assert_read_as_get_doc_reads(self, doctype: str, names: list, lock: bool = False):
		together = stored_documents(doctype, names, lock=lock)
		self.assertEqual(sorted(together), sorted({str(name) for name in names}))
		for name in names:
			alone = frappe.get_doc(doctype, name, for_update=lock or None)
			doc = together[str(name)]
			self.assertIs(type(doc), type(alone))
			self.assertEqual(doc.as_dict(), alone.as_dict())
			self.assertEqual(document_payload(doc), document_payload(alone))
			self.assertEqual(doc.flags, alone.flags)

	def test_documents_with_tables_are_read_as_get_doc_reads_them(self):
		orders = [new_order(f"read together {n}", note=f"note {n}") for n in range(3)]
		orders[1].submit()
		frappe.get_doc({"doctype": ORDER, "title": "no rows", "items": []}).insert()
		names = [o.name for o in orders] + [frappe.db.get_value(ORDER, {"title": "no rows"})]
		self.assert_read_as_get_doc_reads(ORDER, names)
		self.assert_read_as_get_doc_reads(ORDER, names, lock=True)
		# Frappe's own DocTypes, with several tables, controllers of their own and __setup__.
		self.assert_read_as_get_doc_reads("User", ["Administrator", "Guest"])
		self.assert_read_as_get_doc_reads("DocType", ["ToDo", "User", ORDER])
		self.assert_read_as_get_doc_reads(
			"ToDo", [frappe.get_doc({"doctype": "ToDo", "description": "x"}).insert().name]
		)

	def test_names_gone_twice_or_numbered_and_rows_alone(self):
		order = new_order("read together rows")
		found = stored_documents(ORDER, [order.name, "no-such-order", order.name])
		self.assertEqual(list(found), [order.name])
		rows = stored_documents(ORDER_ITEM, [row.name for row in order.items])
		self.assertEqual({name: row.qty for name, row in rows.items()}, {r.name: r.qty for r in order.items})
		basket = new_numbered_basket()
		self.assert_read_as_get_doc_reads(NUMBERED_BASKET, [basket.name])
		self.assertEqual(list(stored_documents(NUMBERED_BASKET, [int(basket.name)])), [str(basket.name)])

	def test_a_name_in_another_case_finds_the_document_as_get_doc_does(self):
		order = new_order("another case")
		for read in (
			stored_document(ORDER, order.name.upper()),
			stored_documents(ORDER, [order.name.upper()])[order.name.upper()],
		):
			self.assertEqual(read.name, order.name)  # as stored
			self.assertEqual(read.as_dict(), frappe.get_doc(ORDER, order.name.upper()).as_dict())
		self.assertIsNone(stored_document(ORDER, "no-such-order"))

	def test_a_name_the_database_finds_in_another_form_finds_it_too(self):
		name = f"Œuvre Café Crème {frappe.generate_hash(length=6)}"
		frappe.get_doc({"doctype": "ToDo", "name": name, "description": "accented"}).db_insert()
		# Without accents, in capitals with trailing spaces, and the ligature spelt out, which
		# utf8mb4_unicode_ci takes as equal (Unicode's decompositions do not).
		plain = name.replace("é", "e").replace("è", "e")
		for given in (plain, name.upper() + "  ", plain.replace("Œ", "OE").lower()):
			self.assertEqual(frappe.get_doc("ToDo", given).name, name)  # as the database finds it
			self.assertEqual(stored_documents("ToDo", [given])[given].name, name)
			self.assertEqual(stored_document("ToDo", given).name, name)

	def test_a_single_is_read_as_get_doc_reads_it(self):
		settings = stored_documents("System Settings", ["System Settings"])
		self.assertEqual(
			settings["System Settings"].as_dict(),
			stored_document("System Settings", "System Settings").as_dict(),
		)


class TestManyDocumentsInAFewQueries(EmissionCase):
	def test_a_raw_update_of_many_orders_reads_each_table_once_per_chunk(self):
		orders = [new_order("many updated") for _ in range(12)]
		start = last_seq()
		selects, inserts = selects_run(), outbox_inserts_run()
		frappe.db.sql(f"UPDATE {TABLE} SET grand_total = grand_total + 1 WHERE title = 'many updated'")
		# Before: its names and values (1); after: the orders and their items (2); the events'
		# schema lookups are cached. One document at a time read 2 per order, and wrote 1 each.
		self.assertLessEqual(selects_run() - selects, 6)
		self.assertLessEqual(outbox_inserts_run() - inserts, 2)
		events = events_after(start, ORDER)
		self.assertEqual([e["type"] for e in events], [UPDATED] * 12)
		self.assertEqual({e["data"]["entityId"] for e in events}, {o.name for o in orders})
		for event in events:
			self.assertEqual(payload(event)["changes"], {"grand_total": {"old": 120.5, "new": 121.5}})
			self.assertEqual([r["item"] for r in payload(event)["doc"]["items"]], ["cauldron", "ladle"])

	def test_chunks_give_every_document_its_own_event_in_order(self):
		orders = [new_order(f"chunked {n:02}") for n in range(7)]
		start = last_seq()
		with chunks_of(3):
			frappe.db.sql(f"UPDATE {TABLE} SET note = 'chunked' WHERE title LIKE 'chunked %%' ORDER BY title")
			updated = events_after(start, ORDER)
			frappe.db.sql(f"DELETE FROM {TABLE} WHERE title LIKE 'chunked %%' ORDER BY title")
		deleted = events_after(start, ORDER)[len(updated) :]
		expected = [o.name for o in orders]
		self.assertEqual([e["data"]["entityId"] for e in updated], expected)
		self.assertEqual({payload(e)["changes"]["note"]["new"] for e in updated}, {"chunked"})
		self.assertEqual([e["type"] for e in deleted], [DELETED] * 7)
		self.assertEqual([e["data"]["entityId"] for e in deleted], expected)
		self.assertEqual({payload(e)["doc"]["note"] for e in deleted}, {"chunked"})

	def test_a_raw_delete_of_many_orders_reads_them_in_a_few_queries(self):
		orders = [new_order("many deleted") for _ in range(12)]
		start = last_seq()
		selects = selects_run()
		frappe.db.delete(ORDER, {"title": "many deleted"})
		self.assertLessEqual(selects_run() - selects, 6)
		events = events_after(start, ORDER)
		self.assertEqual([e["type"] for e in events], [DELETED] * 12)
		self.assertEqual({e["data"]["entityId"] for e in events}, {o.name for o in orders})
		self.assertTrue(all(len(payload(e)["doc"]["items"]) == 2 for e in events))

	def test_a_bulk_insert_of_many_orders_is_a_created_event_each(self):
		names = [frappe.generate_hash(length=10) for _ in range(7)]
		fields = ["name", "title", "company", "grand_total", "docstatus", "owner", "creation", "modified"]
		now = frappe.utils.now()
		start = last_seq()
		with chunks_of(3):
			frappe.db.bulk_insert(
				ORDER,
				fields,
				[(n, "bulk many", "Cauldron Ltd", 9.5, 0, "Administrator", now, now) for n in names],
			)
			# An order has child tables: its created event waits for its rows (the commit here).
			frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual([e["type"] for e in events], [CREATED] * 7)
		self.assertEqual([e["data"]["entityId"] for e in events], names)
		self.assertEqual({payload(e)["doc"]["grand_total"] for e in events}, {9.5})

	def test_a_set_value_by_filters_over_many_orders_reads_them_together(self):
		orders = [new_order("many set") for _ in range(5)]
		start = last_seq()
		selects = selects_run()
		frappe.db.set_value(ORDER, {"title": "many set"}, "note", "set together")
		self.assertLessEqual(selects_run() - selects, 6)
		events = events_after(start, ORDER)
		self.assertEqual({e["data"]["entityId"] for e in events}, {o.name for o in orders})
		self.assertTrue(all(payload(e)["changes"]["note"]["new"] == "set together" for e in events))


class TestRecordedTogether(EmissionCase):
	def envelope(self, n: int):
		return new_envelope("fabric.test.together", "ToDo", f"together-{n}", "noted", {"n": n})

	def test_events_are_written_at_the_end_in_the_order_recorded(self):
		start = last_seq()
		with recorded_together():
			for n in range(3):
				record([self.envelope(n)])
			self.assertEqual(events_after(start, "ToDo"), [])
		events = events_after(start, "ToDo")
		self.assertEqual([e["data"]["payload"]["n"] for e in events], [0, 1, 2])

	def test_every_so_many_events_are_written_and_inner_blocks_join_the_outer(self):
		start = last_seq()
		with chunks_of(2), recorded_together():
			record([self.envelope(0)])
			with recorded_together():
				record([self.envelope(1)])
			self.assertEqual(len(events_after(start, "ToDo")), 2)  # two kept: written
			record([self.envelope(2)])
			self.assertEqual(len(events_after(start, "ToDo")), 2)
		self.assertEqual([e["data"]["payload"]["n"] for e in events_after(start, "ToDo")], [0, 1, 2])

	def test_an_error_inside_writes_what_was_recorded_before_it(self):
		start = last_seq()
		with self.assertRaises(ZeroDivisionError), recorded_together():
			record([self.envelope(0)])
			1 / 0  # noqa: B018
		self.assertEqual([e["data"]["payload"]["n"] for e in events_after(start, "ToDo")], [0])

	def test_a_deadlock_inside_drops_them_with_the_transaction_the_database_rolled_back(self):
		start = last_seq()
		with self.assertRaises(frappe.QueryDeadlockError), recorded_together():
			record([self.envelope(0)])
			raise frappe.QueryDeadlockError("rolled back")
		self.assertEqual(events_after(start, "ToDo"), [])
		record([self.envelope(1)])  # and the next record writes at once again
		self.assertEqual(len(events_after(start, "ToDo")), 1)
