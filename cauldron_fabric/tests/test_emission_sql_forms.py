"""Raw SQL writes in the forms MariaDB takes besides a bare UPDATE, DELETE or INSERT: after a
line comment, under ``SET STATEMENT … FOR``, as ``REPLACE``, and in a session whose limits on
reads would cut or refuse the fabric's own read of the rows (emit/sql_writes.py).

Each was a write with no event and no word: the statement ran as its author meant it, and the
fabric either did not see it was a write or read fewer rows than it wrote.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import frappe

from cauldron_fabric.emit import unrecorded
from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.test_emission_sql import TABLE, UPDATED
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	events_after,
	last_seq,
	new_order,
	payload,
)

CREATED = "fabric_test_order.created"
DELETED = "fabric_test_order.deleted"

watch_sql()


def old(event: dict) -> dict:
	"""Returns the previous value of each field an update event says changed."""
	return {field: change["old"] for field, change in payload(event)["changes"].items()}


class TestStatementForms(EmissionCase):
	def test_an_update_after_a_line_comment_is_an_update(self):
		# Patches open their SQL with a comment saying why; "-- " and "#" run to the line's end.
		orders = [new_order("commented"), new_order("commented")]
		start = last_seq()
		frappe.db.sql(
			f"""
			-- close the orders a patch found stale
			# (both comment forms)
			UPDATE {TABLE} SET note = 'closed by patch' WHERE title = 'commented'"""
		)
		events = events_after(start, ORDER)
		self.assertEqual(sorted(e["data"]["entityId"] for e in events), sorted(o.name for o in orders))
		for event in events:
			self.assertEqual(event["type"], UPDATED)
			self.assertEqual(payload(event)["via"], "sql")
			self.assertEqual(payload(event)["doc"]["note"], "closed by patch")

	def test_a_delete_after_a_line_comment_is_a_delete(self):
		order = new_order("commented delete")
		start = last_seq()
		frappe.db.sql(f"-- gone\nDELETE FROM {TABLE} WHERE name = %s", order.name)
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], DELETED)
		self.assertEqual(event["data"]["entityId"], order.name)

	def test_an_update_under_set_statement_is_an_update(self):
		# MariaDB's per-statement settings: the statement after FOR is the write.
		order = new_order("set statement")
		start = last_seq()
		frappe.db.sql(
			f"SET STATEMENT max_statement_time = 60, sql_mode = 'STRICT_TRANS_TABLES' FOR "
			f"UPDATE {TABLE} SET note = %s WHERE name = %s",
			("with settings", order.name),
		)
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["doc"]["note"], "with settings")

	def test_a_delete_under_set_statement_is_a_delete(self):
		order = new_order("set statement delete")
		start = last_seq()
		frappe.db.sql(
			f"SET STATEMENT max_statement_time=60 FOR DELETE FROM {TABLE} WHERE name = %s", order.name
		)
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], DELETED)

	def test_a_replace_of_a_stored_document_is_its_update_and_of_a_new_one_its_creation(self):
		# REPLACE deletes the row under the name and inserts the new one: the document changed
		# (unlisted columns back to their defaults); a name not stored is a new document.
		order = new_order("replaced", note="before")
		frappe.db.commit()
		fresh = frappe.generate_hash(length=10)
		start = last_seq()
		frappe.db.sql(
			f"""REPLACE INTO {TABLE} (name, title, company, grand_total, creation, modified, owner, modified_by, docstatus)
			VALUES (%s, 'replaced', 'Cauldron Ltd', 99, %s, NOW(6), 'Administrator', 'Administrator', 0),
			(%s, 'replacing', 'Cauldron Ltd', 1, NOW(6), NOW(6), 'Administrator', 'Administrator', 0)""",
			(order.name, order.creation, fresh),
		)
		frappe.db.commit()  # a new order waits for its rows (none here) until then
		events = {e["data"]["entityId"]: e for e in events_after(start, ORDER)}
		self.assertEqual(set(events), {order.name, fresh})
		self.assertEqual(events[order.name]["type"], UPDATED)
		self.assertEqual(old(events[order.name])["grand_total"], 120.5)
		self.assertEqual(old(events[order.name])["note"], "before")  # reset: not listed
		self.assertIsNone(payload(events[order.name])["doc"].get("note"))
		self.assertEqual(events[fresh]["type"], CREATED)
		self.assertEqual(payload(events[fresh])["doc"]["title"], "replacing")

	def test_a_replace_with_set_and_a_replace_select_are_read_too(self):
		order = new_order("replace set", note="kept aside")
		start = last_seq()
		frappe.db.sql(
			f"REPLACE {TABLE} SET name = %s, title = 'replace set', company = 'Cauldron Ltd', "
			"grand_total = 5, creation = NOW(6), modified = NOW(6), docstatus = 0",
			order.name,
		)
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["doc"]["grand_total"], 5)
		start = last_seq()
		frappe.db.sql(
			f"""REPLACE INTO {TABLE} (name, title, company, grand_total, creation, modified, docstatus)
			SELECT name, title, company, grand_total + 1, creation, NOW(6), docstatus FROM {TABLE}
			WHERE name = %s""",
			order.name,
		)
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(old(event)["grand_total"], 5)
		self.assertEqual(payload(event)["doc"]["grand_total"], 6)

	def test_a_replace_of_a_row_is_its_parents_update(self):
		order = new_order("replaced row")
		row = order.items[0]
		start = last_seq()
		frappe.db.sql(
			f"""REPLACE INTO `tab{ORDER_ITEM}` (name, parent, parenttype, parentfield, idx, item, qty)
			VALUES (%s, %s, %s, 'items', 1, 'cauldron', 7)""",
			(row.name, order.name, ORDER),
		)
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual([r["qty"] for r in payload(event)["doc"]["items"]], [7, 3])

	def test_a_replace_of_a_table_with_another_unique_key_is_logged(self):
		# Salutation's own column is unique: the REPLACE may delete a document of another name.
		name = f"Fabric Replace {frappe.generate_hash(length=6)}"
		start = last_seq()
		unrecorded.LOGGED.discard("replace Salutation")  # logged once per process
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			frappe.db.sql("REPLACE INTO `tabSalutation` (name, salutation) VALUES (%s, %s)", (name, name))
		self.assertTrue(frappe.db.exists("Salutation", name))
		self.assertEqual(events_after(start, "Salutation"), [])
		self.assertIn("no event for a REPLACE of Salutation", logged.output[0])
		self.assertIn("unique keys besides name (salutation)", logged.output[0])

	def test_a_replace_of_a_singles_value_is_the_singles_update(self):
		# tabSingles has no unique key: a REPLACE inserts there as an INSERT does.
		self.addCleanup(frappe.db.rollback)  # nothing of it is committed
		frappe.db.set_single_value("System Settings", "app_name", "Cauldron")
		frappe.db.sql("DELETE FROM `tabSingles` WHERE doctype = 'System Settings' AND field = 'app_name'")
		start = last_seq()
		frappe.db.sql(
			"REPLACE INTO `tabSingles` (doctype, field, value) VALUES ('System Settings', 'app_name', 'Fabric')"
		)
		(event,) = [e for e in events_after(start) if e["data"]["entity"] == "System Settings"]
		self.assertEqual(event["type"], "system.change")
		self.assertEqual(payload(event)["changes"]["app_name"], {"old": None, "new": "Fabric"})


class TestLoadData(EmissionCase):
	def test_a_load_data_into_a_watched_table_runs_and_is_logged(self):
		# Its rows come from a file: nothing tells the fabric which documents it writes.
		title = f"loaded {frappe.generate_hash(length=6)}"
		names = [frappe.generate_hash(length=10) for _ in range(2)]
		rows = "".join(f"{name}\t{title}\tCauldron Ltd\t5\n" for name in names)
		path = Path(tempfile.mkdtemp()) / "orders.tsv"
		path.write_text(rows)
		self.addCleanup(shutil.rmtree, path.parent)
		frappe.db.commit()
		# The client must allow LOAD DATA LOCAL: Frappe's connection does with local_infile set.
		frappe.conf.local_infile = 1
		frappe.db.connect()
		self.addCleanup(frappe.db.connect)
		self.addCleanup(frappe.conf.pop, "local_infile")
		start = last_seq()
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			frappe.db.sql(
				f"LOAD DATA LOCAL INFILE %s INTO TABLE {TABLE} (name, title, company, grand_total)", str(path)
			)
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, ORDER, {"title": title})
		self.assertEqual(sorted(frappe.get_all(ORDER, {"title": title}, pluck="name")), sorted(names))
		self.assertEqual(events_after(start, ORDER), [])
		(line,) = logged.output
		self.assertIn(f"no event for this LOAD DATA into {ORDER}: its rows come from a file", line)
		self.assertIn("INSERT … SELECT", line)


class TestSessionLimits(EmissionCase):
	def tearDown(self):
		frappe.db.sql("SET SESSION max_join_size = DEFAULT")
		super().tearDown()

	def test_a_session_that_refuses_big_selects_still_has_an_event_per_row_written(self):
		# max_join_size (a server's guard against runaway queries) refuses a SELECT expected to
		# examine more rows, not the UPDATE or DELETE that examines them: the fabric's read of
		# the rows about to be written failed, and the statement ran with no event.
		orders = [new_order("big select") for _ in range(2)]
		while frappe.db.count(ORDER) < 12:
			new_order("filler")
		start = last_seq()
		# A scan of the whole table is refused; a read of a document by name is not.
		frappe.db.sql("SET SESSION max_join_size = 6")
		frappe.db.sql(f"UPDATE {TABLE} SET note = 'read all the same' WHERE title = 'big select'")
		frappe.db.sql(f"DELETE FROM {TABLE} WHERE title = 'big select'")
		frappe.db.sql("SET SESSION max_join_size = DEFAULT")
		events = events_after(start, ORDER)
		names = sorted(o.name for o in orders)
		self.assertEqual(sorted(e["data"]["entityId"] for e in events if e["type"] == UPDATED), names)
		self.assertEqual(sorted(e["data"]["entityId"] for e in events if e["type"] == DELETED), names)
		for event in events:
			if event["type"] == UPDATED:
				self.assertEqual(payload(event)["changes"]["note"]["new"], "read all the same")
