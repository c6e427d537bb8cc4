"""Raw SQL deletes (frappe.db.delete, DELETE statements) are ``deleted`` events and raw inserts
(frappe.db.bulk_insert, Frappe's document bulk_insert, INSERT … VALUES) ``created`` events, with
``via: sql``; a child row's is its parent's update at commit (emit/sql_writes.py,
emit/sql_inserts.py).
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit import unrecorded
from cauldron_fabric.emit.policy import SET_VALUES_NONE
from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.test_emission_sql import TABLE, UPDATED, orders_one_with_a_ladle
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
	payload,
	types_of,
)

DELETED = "fabric_test_order.deleted"
CREATED = "fabric_test_order.created"

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


class TestRawDeletes(EmissionCase):
	def test_a_delete_is_the_documents_deleted_event_with_the_document_as_it_was(self):
		order = new_order("deleted raw")
		start = last_seq()
		frappe.db.delete(ORDER, {"name": order.name})
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], DELETED)
		self.assertEqual(event["data"]["entityId"], order.name)
		self.assertEqual(payload(event)["via"], "sql")
		self.assertEqual(payload(event)["doc"]["title"], "deleted raw")
		self.assertEqual([row["item"] for row in payload(event)["doc"]["items"]], ["cauldron", "ladle"])

	def test_a_delete_by_filters_is_one_event_per_document_it_deleted(self):
		first, second, other = new_order("purge"), new_order("purge"), new_order("keep")
		start = last_seq()
		frappe.db.sql(f"DELETE FROM {TABLE} WHERE title = %s", "purge")
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [DELETED, DELETED])
		self.assertEqual({e["data"]["entityId"] for e in events}, {first.name, second.name})
		self.assertTrue(frappe.db.exists(ORDER, other.name))
		frappe.db.sql(f"DELETE FROM {TABLE} WHERE title = 'no such order'")
		self.assertEqual(len(events_after(start, ORDER)), 2)

	def test_rows_deleted_raw_are_their_parents_update_at_commit(self):
		order = new_order("rows deleted raw")
		frappe.db.commit()
		start = last_seq()
		frappe.db.delete(ORDER_ITEM, {"parent": order.name})
		self.assertEqual(events_after(start, ORDER), [])  # held for the commit
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["via"], "sql")
		change = payload(event)["changes"]["items"]
		self.assertEqual([row["item"] for row in change["old"]], ["cauldron", "ladle"])
		self.assertEqual(change["new"], [])

	def test_frappes_delete_and_a_save_that_drops_a_row_stay_their_own_events(self):
		order = new_order("frappe deletes")
		start = last_seq()
		order.items = order.items[:1]
		order.save()
		frappe.delete_doc(ORDER, order.name)
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [UPDATED, DELETED])
		self.assertEqual([payload(e).get("via") for e in events], [None, None])

	def test_what_a_deletion_does_to_other_documents_is_theirs(self):
		# Frappe's delete_doc deletes the ToDos that point at the deleted document, raw.
		order = new_order("with a todo")
		todo = frappe.get_doc(
			{
				"doctype": "ToDo",
				"description": "follow up",
				"reference_type": ORDER,
				"reference_name": order.name,
			}
		).insert()
		start = last_seq()
		frappe.delete_doc(ORDER, order.name)
		(deleted,) = events_after(start, "ToDo")
		self.assertEqual((deleted["type"], deleted["data"]["entityId"]), ("todo.deleted", todo.name))
		self.assertEqual(payload(deleted)["via"], "sql")

	def test_a_rollback_takes_the_events_with_the_delete(self):
		order = new_order("delete rolled back")
		frappe.db.commit()
		start = last_seq()
		frappe.db.delete(ORDER, {"name": order.name})
		frappe.db.rollback()
		self.assertEqual(events_after(start, ORDER), [])
		self.assertTrue(frappe.db.exists(ORDER, order.name))

	def test_none_turns_raw_deletes_off_too(self):
		order = new_order("delete off")
		with fabric_settings(capture_set_value=SET_VALUES_NONE):
			start = last_seq()
			frappe.db.delete(ORDER, {"name": order.name})
			self.assertEqual(events_after(start, ORDER), [])

	def test_an_unreadable_delete_runs_and_is_logged(self):
		order = new_order("delete at random")
		start = last_seq()
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			frappe.db.sql(f"DELETE FROM {TABLE} WHERE name = %s AND RAND() < 2", order.name)
		self.assertFalse(frappe.db.exists(ORDER, order.name))
		self.assertEqual(events_after(start, ORDER), [])
		self.assertIn("at random", logged.output[0])

	def test_the_using_form_deletes_the_documents_before_using(self):
		order, kept = orders_one_with_a_ladle("delete using")
		start = last_seq()
		frappe.db.sql(
			f"DELETE FROM o USING {TABLE} o JOIN `tab{ORDER_ITEM}` i ON i.parent = o.name"
			" WHERE i.item = 'ladle' AND o.name IN %s",
			((order.name, kept.name),),
		)
		self.assertEqual(
			[(e["type"], e["data"]["entityId"], payload(e)["via"]) for e in events_after(start, ORDER)],
			[(DELETED, order.name, "sql")],
		)
		self.assertTrue(frappe.db.exists(ORDER, kept.name))


class TestRawInserts(EmissionCase):
	def test_a_bulk_insert_is_one_created_event_per_new_document(self):
		existing = new_order("already there")
		names = [f"fabric-bulk-{frappe.generate_hash(length=8)}" for _ in range(2)]
		start = last_seq()
		frappe.db.bulk_insert(
			ORDER,
			["name", "title", "company", "grand_total"],
			[
				(names[0], "bulk one", "Cauldron Ltd", 1),
				(existing.name, "dup", "x", 0),
				(names[1], "bulk two", "Cauldron Ltd", 2),
			],
			ignore_duplicates=True,
		)
		frappe.db.commit()  # an order waits for its rows until then
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [CREATED, CREATED])
		self.assertEqual([e["data"]["entityId"] for e in events], names)
		self.assertEqual([payload(e)["via"] for e in events], ["sql", "sql"])
		self.assertEqual([payload(e)["doc"]["title"] for e in events], ["bulk one", "bulk two"])

	def test_rows_inserted_raw_are_their_parents_update_at_commit(self):
		order = new_order("rows inserted raw")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(
			f"INSERT INTO `tab{ORDER_ITEM}` (name, parent, parenttype, parentfield, idx, item, qty)"
			" VALUES (%s, %s, %s, 'items', 3, 'spoon', 1), (%s, %s, %s, 'items', 4, 'fork', 2)",
			(
				frappe.generate_hash(length=10),
				order.name,
				ORDER,
				frappe.generate_hash(length=10),
				order.name,
				ORDER,
			),
		)
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual((event["type"], payload(event)["via"]), (UPDATED, "sql"))
		change = payload(event)["changes"]["items"]
		self.assertEqual([row["item"] for row in change["old"]], ["cauldron", "ladle"])
		self.assertEqual([row["item"] for row in change["new"]], ["cauldron", "ladle", "spoon", "fork"])

	def test_frappes_insert_stays_its_own_event(self):
		start = last_seq()
		new_order("inserted by frappe")
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], CREATED)
		self.assertNotIn("via", payload(event))

	def test_a_rollback_takes_the_events_with_the_insert(self):
		frappe.db.commit()
		start = last_seq()
		frappe.db.bulk_insert(
			ORDER, ["name", "title"], [(f"fabric-bulk-{frappe.generate_hash(length=8)}", "gone")]
		)
		frappe.db.rollback()
		self.assertEqual(events_after(start, ORDER), [])

	def test_an_unreadable_insert_runs_and_is_logged(self):
		start = last_seq()
		mark = frappe.generate_hash(length=8)
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			# A name computed by the database: a read of the statement cannot tell it.
			frappe.db.sql(
				f"INSERT INTO {TABLE} SET name = CONCAT('fabric-set-', %s), title = 'set form'", (mark,)
			)
		self.assertTrue(frappe.db.exists(ORDER, f"fabric-set-{mark}"))
		self.assertEqual(events_after(start, ORDER), [])
		self.assertIn("INSERT with a column list", logged.output[0])

	def test_a_name_stored_in_another_form_is_no_new_document(self):
		# The collation takes the capitals as the same name: INSERT IGNORE skips the row.
		stored = new_order("stored in small letters")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(
			f"INSERT IGNORE INTO {TABLE} (name, title) VALUES (%s, 'in capitals')", (stored.name.upper(),)
		)
		self.assertEqual(frappe.db.get_value(ORDER, stored.name, "title"), "stored in small letters")
		self.assertEqual(events_after(start, ORDER), [])

	def test_the_set_form_is_a_created_event(self):
		start = last_seq()
		name = f"fabric-set-{frappe.generate_hash(length=8)}"
		frappe.db.sql(
			f"INSERT INTO {TABLE} SET name = %s, title = 'set form', owner = 'Administrator',"
			" modified_by = 'Administrator', creation = NOW(6), modified = NOW(6)",
			(name,),
		)
		frappe.db.commit()  # an order waits for its rows until then
		(event,) = events_after(start, ORDER)
		self.assertEqual(
			(event["type"], event["data"]["entityId"], payload(event)["via"]), (CREATED, name, "sql")
		)
		self.assertEqual(payload(event)["doc"]["title"], "set form")


class TestInsertSelect(EmissionCase):
	"""``INSERT … (columns) SELECT …``, as patches copy documents: the fabric runs the SELECT
	first for the names about to be inserted."""

	def test_each_document_copied_is_a_created_event(self):
		mark = frappe.generate_hash(length=8)
		sources = [new_order(f"to copy {mark} {n}") for n in range(3)]
		# One copy is there already: INSERT IGNORE leaves it, and it is no event.
		frappe.db.sql(
			f"INSERT INTO {TABLE} (name, title) VALUES (%s, 'copied before')", (f"copy-{sources[0].name}",)
		)
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(
			f"INSERT IGNORE INTO {TABLE} (`name`, title, company, grand_total)\n"
			f"SELECT CONCAT('copy-', name), CONCAT('copy of ', title), company, grand_total * 2 FROM {TABLE} "
			"WHERE title LIKE %s ORDER BY title",
			(f"to copy {mark} %",),
		)
		frappe.db.commit()  # an order waits for its rows until then
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [CREATED, CREATED])
		self.assertEqual([e["data"]["entityId"] for e in events], [f"copy-{s.name}" for s in sources[1:]])
		self.assertEqual([payload(e)["via"] for e in events], ["sql", "sql"])
		self.assertEqual(
			[payload(e)["doc"]["title"] for e in events], [f"copy of {s.title}" for s in sources[1:]]
		)
		self.assertEqual(frappe.db.get_value(ORDER, f"copy-{sources[0].name}", "title"), "copied before")

	def test_rows_a_select_inserts_are_their_parents_update_at_commit(self):
		source, target = new_order("rows copied from"), new_order("rows copied to")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(
			f"INSERT INTO `tab{ORDER_ITEM}` (name, parent, parenttype, parentfield, idx, item, qty) "
			f"SELECT CONCAT(name, '-copy'), %s, parenttype, parentfield, idx + 2, item, qty FROM `tab{ORDER_ITEM}` "
			"WHERE parent = %s",
			(target.name, source.name),
		)
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual((event["data"]["entityId"], payload(event)["via"]), (target.name, "sql"))
		change = payload(event)["changes"]["items"]
		self.assertEqual([row["item"] for row in change["old"]], ["cauldron", "ladle"])
		self.assertEqual([row["item"] for row in change["new"]], ["cauldron", "ladle", "cauldron", "ladle"])

	def test_a_query_after_with_or_in_parentheses_is_read_too(self):
		source = new_order(f"with or parentheses {frappe.generate_hash(length=8)}")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(
			f"INSERT INTO {TABLE} (name, title) WITH s AS (SELECT name, title FROM {TABLE} WHERE name = %s) "
			"SELECT CONCAT('with-', name), title FROM s",
			(source.name,),
		)
		frappe.db.sql(
			f"INSERT INTO {TABLE} (name, title) (SELECT CONCAT('paren-', name), title FROM {TABLE} WHERE name = %s)",
			(source.name,),
		)
		frappe.db.commit()
		self.assertEqual(
			[(e["type"], e["data"]["entityId"]) for e in events_after(start, ORDER)],
			[(CREATED, f"with-{source.name}"), (CREATED, f"paren-{source.name}")],
		)

	def test_a_select_that_names_at_random_runs_and_is_logged(self):
		title = f"copied at random {frappe.generate_hash(length=8)}"
		source = new_order(title)
		start = last_seq()
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			frappe.db.sql(
				f"INSERT INTO {TABLE} (name, title) SELECT LEFT(UUID(), 10), title FROM {TABLE} WHERE name = %s",
				(source.name,),
			)
		self.assertEqual(frappe.db.count(ORDER, {"title": title}), 2)
		self.assertEqual(events_after(start, ORDER), [])
		self.assertIn("rows picked at random", logged.output[0])

	def test_a_select_with_fewer_columns_than_listed_leaves_the_statement_its_own_error(self):
		new_order("fewer columns")
		start = last_seq()
		with self.assertRaises(Exception) as raised:
			frappe.db.sql(f"INSERT INTO {TABLE} (title, company, name) SELECT title, company FROM {TABLE}")
		self.assertIn("Column count doesn't match", str(raised.exception))
		self.assertEqual(events_after(start, ORDER), [])
		# The fabric's streamed read left the connection free for the next statement.
		self.assertEqual(frappe.db.sql("SELECT 1")[0][0], 1)

	def test_a_select_the_database_refuses_leaves_the_statement_its_own_error(self):
		start = last_seq()
		with self.assertRaises(Exception) as raised:
			frappe.db.sql(f"INSERT INTO {TABLE} (name, title) SELECT name, no_such_column FROM {TABLE}")
		self.assertTrue(frappe.db.is_missing_column(raised.exception))
		self.assertEqual(events_after(start, ORDER), [])


class TestUpserts(EmissionCase):
	"""``INSERT … ON DUPLICATE KEY UPDATE``: the documents stored under the names it gives are
	updated, the others created."""

	def test_a_stored_document_is_updated_and_a_new_one_created(self):
		stored = new_order("upserted before")
		new = f"fabric-upsert-{frappe.generate_hash(length=8)}"
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(
			f"INSERT INTO {TABLE} (name, title, company, owner, modified_by, creation, modified) VALUES"
			" (%s, 'upserted', 'Cauldron Ltd', 'Administrator', 'Administrator', NOW(6), NOW(6)),"
			" (%s, 'upserted new', 'Cauldron Ltd', 'Administrator', 'Administrator', NOW(6), NOW(6))"
			" ON DUPLICATE KEY UPDATE title = VALUES(title), modified = VALUES(modified)",
			(stored.name, new),
		)
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(
			[(e["type"], e["data"]["entityId"], payload(e)["via"]) for e in events],
			[(UPDATED, stored.name, "sql"), (CREATED, new, "sql")],
		)
		self.assertEqual(
			payload(events[0])["changes"], {"title": {"old": "upserted before", "new": "upserted"}}
		)
		self.assertEqual(payload(events[1])["doc"]["title"], "upserted new")

	def test_rows_upserted_are_their_parents_update(self):
		order = new_order("rows upserted")
		frappe.db.commit()
		start = last_seq()
		first = order.items[0].name
		frappe.db.sql(
			f"INSERT INTO `tab{ORDER_ITEM}` (name, parent, parenttype, parentfield, idx, item, qty) VALUES"
			" (%s, %s, %s, 'items', 1, 'cauldron', 7), (%s, %s, %s, 'items', 3, 'spoon', 1)"
			" ON DUPLICATE KEY UPDATE qty = VALUES(qty)",
			(first, order.name, ORDER, frappe.generate_hash(length=10), order.name, ORDER),
		)
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual((event["type"], payload(event)["via"]), (UPDATED, "sql"))
		new_rows = payload(event)["changes"]["items"]["new"]
		self.assertEqual(
			[(row["item"], row["qty"]) for row in new_rows], [("cauldron", 7), ("ladle", 3), ("spoon", 1)]
		)

	def test_a_table_with_another_unique_key_is_logged(self):
		# Salutation's own column is unique: a row may update a document under another name.
		name = f"Fabric Upsert {frappe.generate_hash(length=6)}"
		start = last_seq()
		unrecorded.LOGGED.discard("upsert Salutation")  # logged once per process
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			frappe.db.sql(
				"INSERT INTO `tabSalutation` (name, salutation) VALUES (%s, %s)"
				" ON DUPLICATE KEY UPDATE modified = NOW(6)",
				(name, name),
			)
		self.assertTrue(frappe.db.exists("Salutation", name))
		self.assertEqual(events_after(start, "Salutation"), [])
		self.assertIn("unique keys besides name (salutation)", logged.output[0])
		frappe.db.rollback()
