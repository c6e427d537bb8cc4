"""Raw statements over a child table of many parents (UPDATE, DELETE, INSERT, INSERT … SELECT,
rows moved to another parent) read rows and parents together and put the parents' tables aside
in the database until the commit, which tells each parent's update once.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit import rows, session_tables, unrecorded
from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.test_emission_sql import UPDATED
from cauldron_fabric.tests.test_emission_sql_many_support import chunks_of, selects_run
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	events_after,
	last_seq,
	new_order,
	payload,
)

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


class TestManyRowsInAFewQueries(EmissionCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		# A first write of rows in a process reads what is then kept (whether their table is
		# virtual, the updated event's schema): one is made before the queries are counted, so
		# that the counts do not hang on which test of the process runs first.
		order = new_order("rows written before counting")
		frappe.db.sql(f"UPDATE `tab{ORDER_ITEM}` SET qty = qty + 1 WHERE parent = %s", order.name)
		frappe.db.commit()

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
