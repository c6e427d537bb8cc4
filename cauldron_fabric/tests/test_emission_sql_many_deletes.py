"""A raw DELETE of many documents puts them aside in the database session's temporary tables,
not in memory, to tell their deleted events as they were: the copies are dropped once told or
when the statement fails. A DocType that loads its own way has its rows copied too; documents
the database will not copy are held whole, and the delete runs.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit import document_events, session_tables, sql_deletes, sql_writes, unrecorded
from cauldron_fabric.emit.changes import document_payload
from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.test_emission_sql import TABLE
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

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


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
