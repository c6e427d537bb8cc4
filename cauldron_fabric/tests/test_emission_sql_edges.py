"""Raw SQL writes whose statements read, run or race in ways Frappe and ERPNext really meet:
each still records exactly the documents the statement wrote (emit/sql_writes.py)."""

from __future__ import annotations

import frappe
from frappe.database import get_db

from cauldron_fabric.emit import unrecorded
from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.registry.doctypes import refresh_doctype_schemas
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
)

TABLE = f"`tab{ORDER}`"
DELETED = "fabric_test_order.deleted"
UPDATED = "fabric_test_order.updated"
RENAMED = "fabric_test_order.renamed"

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


def committed_elsewhere(query: str, *values) -> None:
	"""Runs ``query`` on a connection of its own and commits it: another user's write."""
	conf = frappe.conf
	other = get_db(
		host=conf.db_host,
		port=conf.db_port,
		user=conf.db_name,
		password=conf.db_password,
		cur_db_name=conf.db_name,
	)
	other.connect()
	try:
		other.sql(query, values)
		other.commit()
	finally:
		other.close()


def written_ids(start: int) -> list[str]:
	return [event["data"]["entityId"] for event in events_after(start, ORDER)]


class TestStatementsAsMariaDBReadsThem(EmissionCase):
	def test_a_negative_value_after_a_minus_writes_one_document_not_all(self):
		# "grand_total-%s" with -5 reaches MariaDB as "grand_total--5": a subtraction, no comment
		# hiding the WHERE (read as one, every order was read, and each was an event).
		order, _other = new_order("minus"), new_order("minus other")
		with fabric_settings(emit_unchanged_saves=1):
			start = last_seq()
			frappe.db.sql(
				f"UPDATE {TABLE} SET grand_total = grand_total-%s WHERE name = %s", (-5, order.name)
			)
			self.assertEqual(written_ids(start), [order.name])
			(event,) = events_after(start, ORDER)
			self.assertEqual(
				event["data"]["payload"]["changes"], {"grand_total": {"old": 120.5, "new": 125.5}}
			)

	def test_empty_values_format_the_statement_as_the_client_does(self):
		# With values, even none (sql_list passes ()), the client formats the statement: "%%"
		# reaches MariaDB as "%". Read unformatted, the WHERE matched no row and the write was lost.
		order = new_order("100%")
		start = last_seq()
		for values, note in (((), "tuple"), ({}, "dict")):
			frappe.db.sql(
				f"UPDATE {TABLE} SET note = '{note}' WHERE title = '100%%' AND name = '{order.name}'", values
			)
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), "dict")
		changes = [event["data"]["payload"]["changes"]["note"]["new"] for event in events_after(start, ORDER)]
		self.assertEqual(changes, ["tuple", "dict"])

	def test_a_comment_before_order_by_and_limit_hides_neither_from_the_read(self):
		# Read with the comment running into the LIMIT, every order titled so was read, and
		# those the statement never wrote were events too (unchanged saves are emitted here).
		title = f"limit {frappe.generate_hash(length=8)}"
		orders = sorted(new_order(title).name for _ in range(3))
		with fabric_settings(emit_unchanged_saves=1):
			start = last_seq()
			frappe.db.sql(
				f"UPDATE {TABLE} SET note = 'first' WHERE title = %s -- the first\nORDER BY name LIMIT 1",
				title,
			)
			self.assertEqual(written_ids(start), orders[:1])

	def test_a_rename_in_sql_is_the_renamed_event_then_the_update(self):
		refresh_doctype_schemas(ORDER)  # as a migrate does: the derived schemas take via
		order = new_order("renamed raw")
		new = f"{order.name}-x"
		start = last_seq()
		frappe.db.sql(f"UPDATE {TABLE} SET name = %s, note = 'moved' WHERE name = %s", (new, order.name))
		renamed, updated = events_after(start, ORDER)
		self.assertEqual((renamed["type"], renamed["data"]["entityId"]), (RENAMED, new))
		self.assertEqual(
			{key: renamed["data"]["payload"][key] for key in ("oldName", "newName", "merge", "via")},
			{"oldName": order.name, "newName": new, "merge": False, "via": "sql"},
		)
		self.assertEqual(renamed["data"]["payload"]["doc"]["name"], new)
		self.assertEqual((updated["type"], updated["data"]["entityId"]), (UPDATED, new))
		self.assertEqual(updated["data"]["payload"]["changes"], {"note": {"old": None, "new": "moved"}})
		self.assertEqual(
			frappe.db.sql_list(
				"SELECT status FROM `tabEvent Log` WHERE name > %s AND entity = %s", (start, ORDER)
			),
			["Recorded", "Recorded"],
		)

	def test_documents_renamed_by_an_expression_each_tell_their_new_name(self):
		title = f"renamed by expression {frappe.generate_hash(length=8)}"
		orders = sorted(new_order(title).name for _ in range(3))
		start = last_seq()
		# Then the rows follow, as a patch moves them: the new name's update, at commit.
		frappe.db.sql(f"UPDATE {TABLE} SET name = CONCAT(name, '-v2') WHERE title = %s", title)
		frappe.db.sql(
			f"UPDATE `tab{ORDER_ITEM}` SET parent = CONCAT(parent, '-v2') WHERE parent IN %s", (orders,)
		)
		frappe.db.commit()
		events = events_after(start, ORDER)
		renames = [e for e in events if e["type"] == RENAMED]
		self.assertEqual(
			sorted((e["data"]["payload"]["oldName"], e["data"]["entityId"]) for e in renames),
			[(name, f"{name}-v2") for name in orders],
		)
		self.assertEqual([e["data"]["payload"]["doc"]["items"] for e in renames], [[], [], []])
		updates = [e for e in events if e["type"] == UPDATED]
		self.assertEqual(sorted(e["data"]["entityId"] for e in updates), [f"{name}-v2" for name in orders])
		self.assertEqual(
			[[row["item"] for row in e["data"]["payload"]["doc"]["items"]] for e in updates],
			[["cauldron", "ladle"]] * 3,
		)

	def test_a_rename_whose_new_names_cannot_be_read_before_is_logged(self):
		# MariaDB sets one table's columns left to right: CONCAT(note, …) reads the note this
		# statement sets first, which a read before it does not see.
		order = new_order("renamed unreadably")
		start = last_seq()
		unrecorded.LOGGED.discard(f"rename {ORDER}")  # logged once per process
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			frappe.db.sql(
				f"UPDATE {TABLE} SET note = 'z', name = CONCAT(name, note) WHERE name = %s", (order.name,)
			)
		self.assertTrue(frappe.db.exists(ORDER, f"{order.name}z"))
		self.assertEqual(events_after(start, ORDER), [])
		self.assertIn("frappe.rename_doc", logged.output[0])

	def test_a_delete_returning_is_the_deleted_event_of_each_document(self):
		order = new_order("returning")
		start = last_seq()
		returned = frappe.db.sql(f"DELETE FROM {TABLE} WHERE name = %s RETURNING name, title", order.name)
		self.assertEqual([tuple(row) for row in returned], [(order.name, "returning")])
		self.assertEqual(
			[(e["type"], e["data"]["entityId"]) for e in events_after(start, ORDER)], [(DELETED, order.name)]
		)

	def test_a_query_builder_statement_passed_to_sql_is_read_as_frappe_runs_it(self):
		# frappe.db.sql(query) with a query builder object (not .run()): Frappe runs str(query).
		order = new_order("qb object")
		table = frappe.qb.DocType(ORDER)
		start = last_seq()
		frappe.db.sql(frappe.qb.update(table).set(table.note, "as object").where(table.name == order.name))
		frappe.db.sql(frappe.qb.from_(table).delete().where(table.name == order.name))
		events = [(e["type"], e["data"]["entityId"]) for e in events_after(start, ORDER)]
		self.assertEqual(events, [(UPDATED, order.name), (DELETED, order.name)])

	def test_a_delete_of_rows_picked_at_random_is_logged_never_guessed(self):
		# Read before it runs, ORDER BY RAND() picked other orders than the statement deleted:
		# those it deleted were no events, and the fabric could not tell.
		title = f"random {frappe.generate_hash(length=8)}"
		orders = {new_order(title).name for _ in range(12)}
		start = last_seq()
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			frappe.db.sql(f"DELETE FROM {TABLE} WHERE title = %s ORDER BY RAND() LIMIT 2", title)
		self.assertEqual(len(orders - set(frappe.get_all(ORDER, {"title": title}, pluck="name"))), 2)
		self.assertEqual(events_after(start, ORDER), [])
		self.assertIn("at random", logged.output[0])


class TestConcurrentWrites(EmissionCase):
	def test_rows_another_transaction_committed_since_the_snapshot_are_read_as_written(self):
		# A transaction reads a snapshot at its first read (REPEATABLE READ); an UPDATE writes the
		# rows as last committed. Another user's commit in between: the statement writes a row
		# the snapshot does not match, with values the snapshot does not hold.
		race = f"race {frappe.generate_hash(length=8)}"
		mine, theirs = new_order(race), new_order("not yet")
		frappe.db.commit()
		start = last_seq()  # this transaction's snapshot
		committed_elsewhere(
			f"UPDATE {TABLE} SET title = %s, note = 'theirs' WHERE name = %s", race, theirs.name
		)
		frappe.db.sql(f"UPDATE {TABLE} SET note = 'mine' WHERE title = %s", race)
		changes = {e["data"]["entityId"]: e["data"]["payload"]["changes"] for e in events_after(start, ORDER)}
		self.assertEqual(
			changes,
			{
				mine.name: {"note": {"old": None, "new": "mine"}},
				theirs.name: {"note": {"old": "theirs", "new": "mine"}},
			},
		)

	def test_documents_another_transaction_committed_since_the_snapshot_are_deleted_events(self):
		race = f"race {frappe.generate_hash(length=8)}"
		mine, theirs = new_order(race).name, f"theirs-{frappe.generate_hash(length=8)}"
		frappe.db.commit()
		start = last_seq()  # this transaction's snapshot
		committed_elsewhere(
			f"INSERT INTO {TABLE} (name, title, company, grand_total, note, docstatus, idx, creation,"
			" modified, owner, modified_by) VALUES (%s, %s, 'Cauldron Ltd', 7, 'theirs', 0, 0, NOW(), NOW(),"
			" 'Administrator', 'Administrator')",
			theirs,
			race,
		)
		frappe.db.delete(ORDER, {"title": race})
		deleted = {e["data"]["entityId"]: e["data"]["payload"]["doc"] for e in events_after(start, ORDER)}
		self.assertEqual(set(deleted), {mine, theirs})
		self.assertEqual(deleted[theirs]["note"], "theirs")


def insert_custom_doctype(name: str) -> None:
	"""Inserts a custom DocType ``name`` with one Data field, ``a``."""
	frappe.get_doc(
		{
			"doctype": "DocType",
			"name": name,
			"module": "Custom",
			"custom": 1,
			"fields": [{"fieldname": "a", "label": "A", "fieldtype": "Data"}],
			"permissions": [{"role": "System Manager", "read": 1}],
		}
	).insert()


class TestTheStatementsOwnOutcome(EmissionCase):
	def test_an_update_of_a_doctype_without_a_table_raises_the_databases_error(self):
		# A patch running before the sync that creates a table catches the database's own
		# error (frappe.db.is_table_missing): the fabric's read must not raise one of its own.
		name = f"Fabric Tableless {frappe.generate_hash(length=6)}"
		insert_custom_doctype(name)
		frappe.db.sql_ddl(f"DROP TABLE `tab{name}`")
		try:
			with self.assertRaises(Exception) as raised:
				frappe.db.sql(f"UPDATE `tab{name}` SET a = 'x' WHERE name = 'y'")
			self.assertTrue(frappe.db.is_table_missing(raised.exception), raised.exception)
		finally:
			frappe.db.sql("DELETE FROM `tabDocField` WHERE parent = %s", name)
			frappe.db.sql("DELETE FROM `tabDocPerm` WHERE parent = %s", name)
			frappe.db.sql("DELETE FROM `tabDocType` WHERE name = %s", name)
			frappe.db.commit()
			frappe.clear_cache(doctype=name)

	def test_a_doctype_created_after_a_statement_named_its_table_is_watched(self):
		# A migrate's patch may name a table before the sync creates its DocType (a statement
		# that fails, or is caught); later patches in the same process write it raw.
		name = f"Fabric Later {frappe.generate_hash(length=6)}"
		with self.assertRaises(Exception):
			frappe.db.sql(f"UPDATE `tab{name}` SET a = 'early' WHERE name = 'x'")
		insert_custom_doctype(name)
		try:
			doc = frappe.get_doc({"doctype": name, "a": "before"}).insert()
			start = last_seq()
			frappe.db.sql(f"UPDATE `tab{name}` SET a = 'after' WHERE name = %s", doc.name)
			(event,) = events_after(start, name)
			self.assertEqual(event["data"]["payload"]["changes"], {"a": {"old": "before", "new": "after"}})
		finally:
			frappe.db.rollback()
			frappe.delete_doc("DocType", name, force=True)
			frappe.db.commit()
