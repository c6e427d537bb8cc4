"""Writes of many documents at once (a raw SQL statement over a table, a set_value by filters,
a bulk insert) read their documents many at a time and write their events together
(``document_events.stored_documents``, ``recorder.recorded_together``): the same events as one
document at a time, in a few queries instead of a few per document.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit import (
	document_events,
	recorder,
	rows,
	session_tables,
	set_values,
	sql_deletes,
	sql_inserts,
	sql_writes,
	unrecorded,
)
from cauldron_fabric.emit.changes import document_payload
from cauldron_fabric.emit.document_events import stored_document, stored_documents
from cauldron_fabric.emit.recorder import new_envelope, record, recorded_together
from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.test_emission_flows import NUMBERED_BASKET, new_numbered_basket
from cauldron_fabric.tests.test_emission_sql import TABLE, UPDATED
from cauldron_fabric.tests.test_emission_sql_edges import committed_elsewhere
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


def selects_run() -> int:
	"""Returns how many SELECTs this database session has run (MariaDB's own count)."""
	return int(frappe.db.sql("SHOW SESSION STATUS LIKE 'Com_select'")[0][1])


def outbox_inserts_run() -> int:
	"""Returns how many INSERTs this database session has run (MariaDB's own count)."""
	return int(frappe.db.sql("SHOW SESSION STATUS LIKE 'Com_insert'")[0][1])


class chunks_of:
	"""Reads and writes ``size`` documents at a time inside (to cross chunk boundaries with a few)."""

	def __init__(self, size: int) -> None:
		self.size = size

	def __enter__(self):
		self.saved = document_events.READ_TOGETHER, recorder.WRITTEN_TOGETHER
		for module in (document_events, rows, set_values, sql_inserts):
			module.READ_TOGETHER = self.size
		recorder.WRITTEN_TOGETHER = self.size

	def __exit__(self, *exc):
		for module in (document_events, rows, set_values, sql_inserts):
			module.READ_TOGETHER = self.saved[0]
		recorder.WRITTEN_TOGETHER = self.saved[1]


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


class TestManyRowsInAFewQueries(EmissionCase):
	def test_a_raw_update_of_many_rows_reads_rows_and_parents_together(self):
		orders = [new_order("many rows") for _ in range(6)]
		frappe.db.commit()
		start = last_seq()
		names = tuple(order.name for order in orders)
		selects = selects_run()
		frappe.db.sql(f"UPDATE `tab{ORDER_ITEM}` SET qty = qty + 10 WHERE parent IN %s", (names,))
		# The table's columns (1, when not known yet), the rows' names (1) and their parents (1);
		# the database copies the tables. One at a time read each row, and each parent with its
		# items.
		self.assertLessEqual(selects_run() - selects, 3)
		self.assertEqual(events_after(start, ORDER), [])  # the parents' updates wait for the commit
		selects = selects_run()
		frappe.db.commit()
		# The parents and their items as committed (2), the items put aside (1).
		self.assertLessEqual(selects_run() - selects, 3)
		events = events_after(start, ORDER)
		self.assertEqual([e["type"] for e in events], [UPDATED] * 6)
		self.assertEqual({e["data"]["entityId"] for e in events}, set(names))
		for event in events:
			change = payload(event)["changes"]["items"]
			self.assertEqual([row["qty"] for row in change["old"]], [1, 3])
			self.assertEqual([row["qty"] for row in change["new"]], [11, 13])
			self.assertEqual(payload(event)["via"], "sql")

	def test_rows_of_many_parents_in_chunks_are_each_parents_update(self):
		orders = [new_order("rows in chunks") for _ in range(5)]
		frappe.db.commit()
		start = last_seq()
		with chunks_of(2):
			frappe.db.sql(
				f"UPDATE `tab{ORDER_ITEM}` SET qty = qty * 2 WHERE parent IN %s", ([o.name for o in orders],)
			)
			frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(sorted(e["data"]["entityId"] for e in events), sorted(o.name for o in orders))
		for event in events:
			self.assertEqual([row["qty"] for row in payload(event)["changes"]["items"]["new"]], [2, 6])

	def test_rows_inserted_raw_into_many_parents_read_the_parents_together(self):
		orders = [new_order("many rows inserted") for _ in range(4)]
		frappe.db.commit()
		start = last_seq()
		fields = ["name", "parent", "parenttype", "parentfield", "idx", "item", "qty", "docstatus"]
		values = [(frappe.generate_hash(length=10), o.name, ORDER, "items", 3, "spoon", 2, 0) for o in orders]
		selects = selects_run()
		frappe.db.bulk_insert(ORDER_ITEM, fields, values)
		self.assertLessEqual(selects_run() - selects, 6)
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual({e["data"]["entityId"] for e in events}, {o.name for o in orders})
		for event in events:
			change = payload(event)["changes"]["items"]
			self.assertEqual([row["item"] for row in change["new"]], ["cauldron", "ladle", "spoon"])
			self.assertEqual([row["item"] for row in change["old"]], ["cauldron", "ladle"])


class TestDeletedDocumentsPutAside(EmissionCase):
	def test_a_delete_copies_its_documents_into_the_database_not_into_memory(self):
		orders = [new_order(f"put aside {n}") for n in range(5)]
		copies = []
		original = sql_deletes.plan_deletion

		def noted(doctype, names, lock):
			deletion = original(doctype, names, lock)
			copies.append(dict(deletion.copies))
			self.assertIsNone(deletion.held)
			for doctype_copied, table in deletion.copies.items():
				# The copy holds the rows as they were, in the database session.
				counted = frappe.db.sql(f"SELECT COUNT(*) FROM `{table}`")[0][0]
				self.assertEqual(counted, 5 if doctype_copied == ORDER else 10)
			return deletion

		start = last_seq()
		sql_writes.plan_deletion = noted  # watching what the planner put aside
		try:
			frappe.db.sql(f"DELETE FROM {TABLE} WHERE title LIKE 'put aside %%' ORDER BY title")
		finally:
			sql_writes.plan_deletion = original
		(tables,) = copies
		self.assertEqual(set(tables), {ORDER, ORDER_ITEM})
		for table in tables.values():  # dropped once the events were recorded
			with self.assertRaises(Exception):
				frappe.db.sql(f"SELECT 1 FROM `{table}`")
		events = events_after(start, ORDER)
		self.assertEqual([e["data"]["entityId"] for e in events], [o.name for o in orders])
		for event, order in zip(events, orders, strict=True):
			self.assertEqual(payload(event)["doc"]["title"], order.title)
			self.assertEqual(payload(event)["doc"]["items"], [document_payload(row) for row in order.items])

	def test_a_delete_that_fails_drops_its_copies_and_records_nothing(self):
		title = f"fails to delete {frappe.generate_hash(length=8)}"
		new_order(title)
		frappe.db.commit()
		# The database refuses the DELETE itself, after the fabric has read and copied its rows.
		frappe.db.sql(
			f"CREATE TRIGGER fabric_test_refuse BEFORE DELETE ON {TABLE} FOR EACH ROW "
			"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by a trigger'"
		)
		start = last_seq()
		seen = []
		original = sql_deletes.PlannedDeletion.discard

		def discard(deletion):
			seen.extend((deletion.copies or {}).values())
			original(deletion)

		sql_deletes.PlannedDeletion.discard = discard
		try:
			with self.assertRaises(Exception) as raised:
				frappe.db.sql(f"DELETE FROM {TABLE} WHERE title = %s", title)
		finally:
			sql_deletes.PlannedDeletion.discard = original
			frappe.db.commit()
			frappe.db.sql("DROP TRIGGER IF EXISTS fabric_test_refuse")
		self.assertIn("refused by a trigger", str(raised.exception))
		self.assertEqual(len(seen), 2)  # the orders' copy and their items'
		for table in seen:
			with self.assertRaises(Exception):
				frappe.db.sql(f"SELECT 1 FROM `{table}`")
		self.assertEqual(events_after(start, ORDER), [])
		self.assertTrue(frappe.db.exists(ORDER, {"title": title}))
		frappe.db.delete(ORDER, {"title": title})
		frappe.db.commit()

	def test_what_another_session_committed_since_the_snapshot_is_what_it_tells(self):
		order = new_order("changed elsewhere")
		frappe.db.commit()
		start = last_seq()  # this transaction's snapshot
		committed_elsewhere(
			f"UPDATE `tab{ORDER_ITEM}` SET qty = 42 WHERE parent = %s AND idx = 1", order.name
		)
		committed_elsewhere(f"UPDATE {TABLE} SET note = 'elsewhere' WHERE name = %s", order.name)
		frappe.db.sql(f"DELETE FROM {TABLE} WHERE name = %s", (order.name,))
		(event,) = events_after(start, ORDER)
		self.assertEqual(payload(event)["doc"]["note"], "elsewhere")
		self.assertEqual([row["qty"] for row in payload(event)["doc"]["items"]], [42, 3])

	def test_a_doctype_that_loads_its_own_way_is_held_whole(self):
		self.assertFalse(document_events.loads_as_stored("System Settings"))
		user = frappe.get_doc(
			{
				"doctype": "User",
				"email": f"{frappe.generate_hash(length=8)}@deleted.example",
				"first_name": "Gone",
			}
		).insert()
		# A User's controller loads as Frappe's does: its rows are copied too.
		self.assertTrue(document_events.loads_as_stored("User"))
		deletion = sql_deletes.plan_deletion("User", [user.name], lock=True)
		try:
			self.assertIsNone(deletion.held)
			self.assertIn("Has Role", deletion.copies)
		finally:
			deletion.discard()

	def test_rows_the_database_will_not_copy_are_held_whole_and_the_delete_runs(self):
		title = f"not copied {frappe.generate_hash(length=8)}"
		orders = [new_order(title) for _ in range(3)]
		# The database refuses the copy: a temporary table of the name it takes next is there.
		taken = f"fabric_deleting_{next(session_tables._copy_numbers) + 1}"
		session_tables.run(f"CREATE TEMPORARY TABLE `{taken}` (x INT)")
		start = last_seq()
		unrecorded.LOGGED.discard(f"copy {ORDER}")  # logged once per process
		try:
			with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
				frappe.db.sql(f"DELETE FROM {TABLE} WHERE title = %s", title)
		finally:
			session_tables.run(f"DROP TEMPORARY TABLE `{taken}`")
		self.assertIn("holds them in memory", logged.output[0])
		events = events_after(start, ORDER)
		self.assertEqual(sorted(e["data"]["entityId"] for e in events), sorted(o.name for o in orders))
		self.assertTrue(all(len(payload(e)["doc"]["items"]) == 2 for e in events))
		self.assertFalse(frappe.db.exists(ORDER, {"title": title}))


class TestRowsMovedToAnotherParent(EmissionCase):
	def test_a_row_moved_raw_is_its_old_and_its_new_parents_update(self):
		first, second = new_order("moved from"), new_order("moved to")
		frappe.db.commit()
		start = last_seq()
		moved = first.items[0].name
		frappe.db.sql(
			f"UPDATE `tab{ORDER_ITEM}` SET parent = %s, idx = 3 WHERE name = %s", (second.name, moved)
		)
		frappe.db.commit()
		events = {e["data"]["entityId"]: payload(e) for e in events_after(start, ORDER)}
		self.assertEqual(set(events), {first.name, second.name})
		left = events[first.name]["changes"]["items"]
		self.assertEqual([row["item"] for row in left["old"]], ["cauldron", "ladle"])
		self.assertEqual([row["item"] for row in left["new"]], ["ladle"])
		arrived = events[second.name]["changes"]["items"]
		self.assertEqual([row["item"] for row in arrived["old"]], ["cauldron", "ladle"])
		self.assertEqual([row["item"] for row in arrived["new"]], ["cauldron", "ladle", "cauldron"])
		self.assertEqual(arrived["new"][2]["name"], moved)
		self.assertEqual({p["via"] for p in events.values()}, {"sql"})

	def test_rows_whose_parent_stays_are_one_update_of_it(self):
		order = new_order("moved nowhere")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(
			f"UPDATE `tab{ORDER_ITEM}` SET parent = parent, qty = qty + 1 WHERE parent = %s", order.name
		)
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual([row["qty"] for row in payload(event)["changes"]["items"]["new"]], [2, 4])


def held_row_changes() -> dict:
	return dict(rows.held_now(rows.ROW_CHANGES))


def qtys(event, side: str) -> list:
	return [row["qty"] for row in payload(event)["changes"]["items"][side]]


class TestRowsPutAside(EmissionCase):
	"""A statement over a child table puts its parents' tables aside in the database until the
	commit (rows.rows_about_to_change), not in memory."""

	def assert_put_aside_and_told_at_commit(self, start: int, orders: list, new_qtys: list) -> None:
		"""Asserts that each order's table waits aside, then that the commit tells each order's
		update once, from its two rows (qty 1 and 3) to ``new_qtys``."""
		held = held_row_changes()
		self.assertEqual(set(held), {(ORDER, o.name) for o in orders})
		self.assertTrue(all(isinstance(c["before"]["items"], rows.RowsAside) for c in held.values()))
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(sorted(e["data"]["entityId"] for e in events), sorted(o.name for o in orders))
		for event in events:
			self.assertEqual(qtys(event, "old"), [1, 3])
			self.assertEqual(qtys(event, "new"), new_qtys)

	def update_items(self, orders, expression: str = "qty + 10") -> None:
		frappe.db.sql(
			f"UPDATE `tab{ORDER_ITEM}` SET qty = {expression} WHERE parent IN %s", ([o.name for o in orders],)
		)

	def test_the_tables_as_they_were_wait_in_a_temporary_table_until_the_commit(self):
		orders = [new_order("rows aside") for _ in range(5)]
		frappe.db.commit()
		start = last_seq()
		self.update_items(orders)
		held = held_row_changes()
		self.assertEqual(set(held), {(ORDER, o.name) for o in orders})
		(aside,) = {change["before"]["items"] for change in held.values()}
		self.assertIsInstance(aside, rows.RowsAside)
		counted = frappe.db.sql(
			f"SELECT parent, SUM(qty) FROM `{aside.table}` GROUP BY parent ORDER BY parent", as_list=True
		)
		self.assertEqual(counted, sorted([o.name, 4] for o in orders))
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(sorted(e["data"]["entityId"] for e in events), sorted(o.name for o in orders))
		for event in events:
			self.assertEqual(qtys(event, "old"), [1, 3])
			self.assertEqual(qtys(event, "new"), [11, 13])
			self.assertEqual(payload(event)["changes"]["items"]["old"][0]["item"], "cauldron")
		with self.assertRaises(Exception):  # dropped when the transaction ended
			frappe.db.sql(f"SELECT 1 FROM `{aside.table}`")

	def test_a_rollback_records_nothing_and_drops_the_copy(self):
		orders = [new_order("rows aside, rolled back") for _ in range(3)]
		frappe.db.commit()
		start = last_seq()
		self.update_items(orders)
		(aside,) = {change["before"]["items"] for change in held_row_changes().values()}
		frappe.db.rollback()
		with self.assertRaises(Exception):
			frappe.db.sql(f"SELECT 1 FROM `{aside.table}`")
		self.assertEqual(events_after(start, ORDER), [])
		# The next transaction puts them aside afresh.
		self.update_items(orders, "qty + 1")
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(len(events), 3)
		self.assertTrue(all(qtys(e, "old") == [1, 3] and qtys(e, "new") == [2, 4] for e in events))

	def test_a_rollback_to_a_savepoint_takes_the_rows_put_aside_since(self):
		kept, undone = (
			[new_order("aside, kept") for _ in range(2)],
			[new_order("aside, undone") for _ in range(2)],
		)
		frappe.db.commit()
		start = last_seq()
		self.update_items(kept)
		frappe.db.savepoint("fabric_rows_aside")
		self.update_items(undone)
		frappe.db.rollback(save_point="fabric_rows_aside")
		self.assertEqual(set(held_row_changes()), {(ORDER, o.name) for o in kept})
		# Put aside again: the copy holds their rows once, as the savepoint left them.
		self.update_items(undone, "qty * 3")
		frappe.db.commit()
		events = {e["data"]["entityId"]: e for e in events_after(start, ORDER)}
		self.assertEqual(set(events), {o.name for o in kept + undone})
		for order in kept:
			self.assertEqual(qtys(events[order.name], "old"), [1, 3])
			self.assertEqual(qtys(events[order.name], "new"), [11, 13])
		for order in undone:
			self.assertEqual(qtys(events[order.name], "old"), [1, 3])
			self.assertEqual(qtys(events[order.name], "new"), [3, 9])

	def test_a_parent_saved_after_takes_its_rows_back_and_can_put_them_aside_again(self):
		orders = [new_order("aside, then saved") for _ in range(2)]
		frappe.db.commit()
		start = last_seq()
		self.update_items(orders)
		saved = frappe.get_doc(ORDER, orders[0].name)
		saved.note = "saved after its rows"
		saved.save()
		self.update_items(orders, "qty + 100")
		frappe.db.commit()
		events = events_after(start, ORDER)
		mine = [e for e in events if e["data"]["entityId"] == saved.name]
		# The rows' update first, ending where the save started; the save; the rows again.
		self.assertEqual(len(mine), 3)
		self.assertEqual(qtys(mine[0], "old"), [1, 3])
		self.assertEqual(qtys(mine[0], "new"), [11, 13])
		self.assertEqual(payload(mine[1])["changes"]["note"]["new"], "saved after its rows")
		self.assertEqual(qtys(mine[2], "old"), [11, 13])
		self.assertEqual(qtys(mine[2], "new"), [111, 113])
		(other,) = [e for e in events if e["data"]["entityId"] == orders[1].name]
		self.assertEqual(qtys(other, "old"), [1, 3])
		self.assertEqual(qtys(other, "new"), [111, 113])

	def test_deleted_rows_of_many_parents_are_put_aside_too(self):
		orders = [new_order("aside, rows deleted") for _ in range(3)]
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(
			f"DELETE FROM `tab{ORDER_ITEM}` WHERE parent IN %s AND idx = 1", ([o.name for o in orders],)
		)
		self.assert_put_aside_and_told_at_commit(start, orders, [3])

	def test_rows_the_database_will_not_copy_are_held_in_memory_and_still_told(self):
		orders = [new_order("aside refused") for _ in range(3)]
		frappe.db.commit()
		start = last_seq()
		unrecorded.LOGGED.discard(f"rows aside {ORDER_ITEM}")  # logged once per process
		taken = f"fabric_rows_before_{next(session_tables._copy_numbers) + 1}"
		session_tables.run(f"CREATE TEMPORARY TABLE `{taken}` (x INT)")
		try:
			with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
				self.update_items(orders)
			self.assertIn("holds their parents' tables in memory", logged.output[0])
			self.assertTrue(all(isinstance(c["before"]["items"], list) for c in held_row_changes().values()))
			frappe.db.commit()
		finally:
			session_tables.run(f"DROP TEMPORARY TABLE `{taken}`")
		events = events_after(start, ORDER)
		self.assertEqual(len(events), 3)
		self.assertTrue(all(qtys(e, "old") == [1, 3] and qtys(e, "new") == [11, 13] for e in events))

	def test_rows_inserted_into_many_parents_put_their_tables_aside_before_the_statement(self):
		orders = [new_order("aside, rows inserted") for _ in range(3)]
		frappe.db.commit()
		start = last_seq()
		fields = ["name", "parent", "parenttype", "parentfield", "idx", "item", "qty"]
		frappe.db.bulk_insert(
			ORDER_ITEM,
			fields,
			[(frappe.generate_hash(length=10), o.name, ORDER, "items", 3, "spoon", 5) for o in orders],
		)
		self.assert_put_aside_and_told_at_commit(start, orders, [1, 3, 5])

	def test_rows_an_insert_select_copies_into_their_own_parents_are_each_parents_update(self):
		orders = [new_order("aside, rows copied") for _ in range(3)]
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(
			f"INSERT INTO `tab{ORDER_ITEM}` (name, parent, parenttype, parentfield, idx, item, qty) "
			f"SELECT CONCAT(name, '-again'), parent, parenttype, parentfield, idx + 2, item, qty * 10 "
			f"FROM `tab{ORDER_ITEM}` WHERE parent IN %s",
			([o.name for o in orders],),
		)
		self.assert_put_aside_and_told_at_commit(start, orders, [1, 3, 10, 30])
