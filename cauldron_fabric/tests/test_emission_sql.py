"""Raw SQL updates (frappe.db.sql("UPDATE …"), frappe.qb.update(…).run()) are ``updated``
events with ``via: sql``, as a set_value of the same columns would be (emit/sql_writes.py). Raw deletes and inserts:
test_emission_sql_deletes_inserts.py.

Patches, ERPNext's status updaters and custom apps write this way, with no document hook.
"""

from __future__ import annotations

import frappe
from frappe.modules.patch_handler import execute_patch

from cauldron_fabric.emit.policy import SET_VALUES_ALL, SET_VALUES_NONE, SET_VALUES_THAT_UPDATE_MODIFIED
from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.test_emission_set_value_support import reads_of, stored_without_hooks
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
	payload,
	save_with_hooks,
	types_of,
)

UPDATED = "fabric_test_order.updated"
TABLE = f"`tab{ORDER}`"

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


def orders_one_with_a_ladle(title: str) -> tuple:
	"""Returns two new orders, committed: the first with a ladle row, the second without."""
	order, other = new_order(title), new_order(f"{title}, no ladle")
	frappe.db.delete(ORDER_ITEM, {"parent": other.name, "item": "ladle"})
	frappe.db.commit()
	return order, other


def note_by_sql(doc, method=None) -> None:
	"""A controller hook that writes the order's note with a raw UPDATE, naming the hook."""
	frappe.db.sql(f"UPDATE {TABLE} SET note = %s WHERE name = %s", (f"sql in {method}", doc.name))


class TestRawUpdates(EmissionCase):
	def test_an_update_is_an_update_of_the_stored_document(self):
		order = new_order("raw sql")
		start = last_seq()
		frappe.db.sql(
			f"UPDATE {TABLE} SET note = %s, grand_total = grand_total * 2 WHERE name = %s",
			("written raw", order.name),
		)
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(event["data"]["entityId"], order.name)
		self.assertEqual(payload(event)["via"], "sql")
		self.assertEqual(
			payload(event)["changes"],
			{"note": {"old": None, "new": "written raw"}, "grand_total": {"old": 120.5, "new": 241.0}},
		)
		self.assertEqual(payload(event)["doc"]["note"], "written raw")

	def test_a_query_builder_update_by_filters_is_one_event_per_row_it_wrote(self):
		first, second, other = new_order("qb a"), new_order("qb b"), new_order("qb other")
		start = last_seq()
		table = frappe.qb.DocType(ORDER)
		# The WHERE names the column the update sets: the rows are those it matched before.
		(frappe.qb.update(table).set(table.title, "qb done").where(table.title.isin(["qb a", "qb b"])).run())
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [UPDATED, UPDATED])
		self.assertEqual({e["data"]["entityId"] for e in events}, {first.name, second.name})
		self.assertEqual([payload(e)["changes"]["title"]["new"] for e in events], ["qb done", "qb done"])
		self.assertEqual(frappe.db.get_value(ORDER, other.name, "title"), "qb other")

	def test_values_by_name_by_position_and_none(self):
		order = new_order("values")
		start = last_seq()
		frappe.db.sql(
			f"UPDATE {TABLE} SET note = %(note)s WHERE name = %(name)s", {"note": "named", "name": order.name}
		)
		frappe.db.sql(f"UPDATE {TABLE} SET note = %s WHERE name = %s", ["listed", order.name])
		# No values: the statement's own text, % and quotes included, read as it is.
		frappe.db.sql(f"UPDATE {TABLE} SET note = '100% it''s \\'raw\\'' WHERE name = '{order.name}'")
		events = events_after(start, ORDER)
		self.assertEqual(
			[payload(e)["changes"]["note"]["new"] for e in events], ["named", "listed", "100% it's 'raw'"]
		)

	def test_order_by_and_limit_pick_the_rows_written(self):
		orders = [new_order("limited") for _ in range(3)]
		start = last_seq()
		frappe.db.sql(f"UPDATE {TABLE} SET note = 'first two' WHERE title = 'limited' ORDER BY name LIMIT 2")
		written = sorted(order.name for order in orders)[:2]
		self.assertEqual(sorted(e["data"]["entityId"] for e in events_after(start, ORDER)), written)

	def test_an_update_that_changes_nothing_records_nothing(self):
		order = new_order("unchanged")
		start = last_seq()
		frappe.db.sql(f"UPDATE {TABLE} SET title = 'unchanged' WHERE name = %s", order.name)
		frappe.db.sql(f"UPDATE {TABLE} SET title = 'x' WHERE name = 'no such order'")
		self.assertEqual(events_after(start, ORDER), [])

	def test_a_rollback_takes_the_event_with_the_write(self):
		order = new_order("rolled back")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(f"UPDATE {TABLE} SET note = 'never committed' WHERE name = %s", order.name)
		frappe.db.rollback()
		self.assertEqual(events_after(start, ORDER), [])

	def test_auto_commit_commits_the_event_with_the_write(self):
		order = new_order("auto commit")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(f"UPDATE {TABLE} SET note = 'auto' WHERE name = %s", order.name, auto_commit=1)
		frappe.db.rollback()  # nothing left to roll back: both were committed
		(event,) = events_after(start, ORDER)
		self.assertEqual(payload(event)["changes"], {"note": {"old": None, "new": "auto"}})

	def test_a_joined_update_writes_the_table_its_columns_name(self):
		order = new_order("joined")
		start = last_seq()
		frappe.db.sql(
			f"""UPDATE {TABLE} o JOIN `tab{ORDER_ITEM}` i ON i.parent = o.name
			SET o.note = CONCAT('items: ', i.item) WHERE o.name = %s AND i.idx = 1""",
			order.name,
		)
		(event,) = events_after(start, ORDER)
		self.assertEqual(payload(event)["changes"], {"note": {"old": None, "new": "items: cauldron"}})

	def test_a_row_written_raw_is_its_parents_update_at_commit(self):
		order = new_order("raw rows")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(f"UPDATE `tab{ORDER_ITEM}` SET qty = qty + 10 WHERE parent = %s", order.name)
		self.assertEqual(events_after(start, ORDER), [])  # held for the commit
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(payload(event)["via"], "sql")
		change = payload(event)["changes"]["items"]
		self.assertEqual([row["qty"] for row in change["old"]], [1, 3])
		self.assertEqual([row["qty"] for row in change["new"]], [11, 13])

	def test_a_write_from_a_saves_hook_follows_the_saves_event(self):
		_, (saved, written) = save_with_hooks(__name__, "raw hook", on_update="note_by_sql")
		self.assertEqual(types_of([saved, written]), [UPDATED, UPDATED])
		self.assertEqual(payload(saved)["changes"], {"title": {"old": "raw hook", "new": "saved"}})
		self.assertEqual(payload(written)["via"], "sql")
		self.assertEqual(payload(written)["changes"], {"note": {"old": None, "new": "sql in on_update"}})

	def test_a_patch_written_in_sql_is_recorded(self):
		order = new_order("patched")
		frappe.db.commit()
		start = last_seq()
		patch = f"execute:frappe.db.sql(\"UPDATE {TABLE} SET note = 'patched' WHERE name = '{order.name}'\")"
		try:
			execute_patch(patch)
			(event,) = events_after(start, ORDER)
			self.assertEqual(payload(event)["changes"], {"note": {"old": None, "new": "patched"}})
		finally:
			frappe.db.delete("Patch Log", {"patch": patch})
			frappe.db.commit()

	def test_frappes_own_writes_stay_their_own_events(self):
		order = new_order("own writes")
		start = last_seq()
		frappe.db.set_value(ORDER, order.name, "note", "by set_value")
		order.reload()
		order.db_set("note", "by db_set")
		order.title = "saved"
		order.save()
		events = events_after(start, ORDER)
		self.assertEqual([payload(e).get("via") for e in events], ["set_value", "db_set", None])

	def test_a_rename_is_its_renamed_event_alone(self):
		order = new_order("to rename")
		start = last_seq()
		frappe.rename_doc(ORDER, order.name, f"{order.name}-renamed")
		self.assertEqual(types_of(events_after(start, ORDER)), ["fabric_test_order.renamed"])


class TestWhichUpdatesCount(EmissionCase):
	def test_by_default_frappes_bookkeeping_columns_are_left_alone_unread(self):
		order = new_order("bookkeeping")
		start = last_seq()
		with reads_of(ORDER) as reads:
			frappe.db.sql(
				f"UPDATE {TABLE} SET _assign = '[\"a@example.com\"]', modified = NOW() WHERE name = %s",
				order.name,
			)
		self.assertEqual(reads, [])
		self.assertEqual(events_after(start, ORDER), [])

	def test_by_default_frappes_counters_are_bookkeeping_and_every_write_counts_them(self):
		doctype = frappe.qb.DocType("DocType")
		for mode, expected in ((SET_VALUES_THAT_UPDATE_MODIFIED, 0), (SET_VALUES_ALL, 1)):
			with self.subTest(mode=mode), fabric_settings(capture_set_value=mode):
				name = stored_without_hooks("Email Account")
				start = last_seq()
				frappe.db.sql("UPDATE `tabEmail Account` SET uidnext = 42 WHERE name = %s", name)
				self.assertEqual(len(events_after(start, "Email Account")), expected)
				# What every migrate writes for each DocType it imports (frappe.modules.import_file).
				migrated = f"hash {mode}"
				frappe.qb.update(doctype).set(doctype.migration_hash, migrated).where(
					doctype.name == ORDER
				).run()
				self.assertEqual(len(events_after(start, "DocType")), expected)
				frappe.db.rollback()

	def test_none_turns_raw_updates_off_too(self):
		order = new_order("off")
		with fabric_settings(capture_set_value=SET_VALUES_NONE):
			start = last_seq()
			frappe.db.sql(f"UPDATE {TABLE} SET note = 'unrecorded' WHERE name = %s", order.name)
			self.assertEqual(events_after(start, ORDER), [])

	def test_a_denied_doctype_records_nothing(self):
		order = new_order("denied")
		with fabric_settings(denied_doctypes=[{"document_type": ORDER}]):
			start = last_seq()
			frappe.db.sql(f"UPDATE {TABLE} SET note = 'denied' WHERE name = %s", order.name)
			self.assertEqual(events_after(start, ORDER), [])

	def test_an_unqualified_column_of_a_join_writes_the_one_table_that_has_it(self):
		order, other = orders_one_with_a_ladle("joined unqualified")
		start = last_seq()
		frappe.db.sql(
			f"UPDATE {TABLE} o JOIN `tab{ORDER_ITEM}` i ON i.parent = o.name SET note = 'joined', qty = 9"
			" WHERE i.item = 'ladle' AND o.name IN %s",
			((order.name, other.name),),
		)
		frappe.db.commit()
		# The order's own column at once, its rows as its update at commit (as qualified).
		noted, rows = events_after(start, ORDER)
		self.assertEqual(
			[(e["type"], e["data"]["entityId"]) for e in (noted, rows)], [(UPDATED, order.name)] * 2
		)
		self.assertEqual(payload(noted)["changes"], {"note": {"old": None, "new": "joined"}})
		self.assertEqual([row["qty"] for row in payload(rows)["changes"]["items"]["new"]], [1, 9])

	def test_an_unreadable_update_runs_and_is_logged(self):
		order = new_order("ambiguous")
		start = last_seq()
		# An unqualified column of a join with a derived table, whose columns the fabric cannot
		# know: which table it writes is the database's to know.
		with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
			frappe.db.sql(
				f"UPDATE {TABLE} o JOIN (SELECT %s AS picked) d ON d.picked = o.name SET note = 'joined'",
				order.name,
			)
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), "joined")
		self.assertEqual(events_after(start, ORDER), [])
		self.assertIn("qualify each SET column", logged.output[0])

	def test_a_statement_that_runs_after_its_read_was_refused_is_logged(self):
		# Under LOCK TABLES a session reads no table it did not lock: the orders' table is
		# locked, their items' table is not, so the fabric's read of the orders it is about to
		# delete (with their items) fails, while the DELETE, of the orders' table alone, runs.
		orders = [new_order("read refused"), new_order("read refused")]
		start = last_seq()
		frappe.db.sql(f"LOCK TABLES {TABLE} WRITE")  # (commits, as MariaDB does before it)
		try:
			with self.assertLogs(frappe.logger("cauldron_fabric"), "WARNING") as logged:
				frappe.db.sql(f"DELETE FROM {TABLE} WHERE title = 'read refused'")
		finally:
			frappe.db.sql("UNLOCK TABLES")
		frappe.db.delete(ORDER_ITEM, {"parent": ("in", [o.name for o in orders])})
		frappe.db.commit()
		self.assertFalse(frappe.db.exists(ORDER, {"name": ("in", [o.name for o in orders])}))
		self.assertEqual(events_after(start, ORDER), [])
		(refused,) = [line for line in logged.output if "the database refused its read" in line]
		self.assertIn("no event for this DELETE: the database refused its read", refused)
		self.assertIn("was not locked with LOCK TABLES", refused)

	def test_a_statement_the_database_refuses_raises_its_own_error(self):
		order = new_order("refused")
		start = last_seq()
		with self.assertRaises(frappe.db.OperationalError) as raised:
			frappe.db.sql(f"UPDATE {TABLE} SET no_such_column = 1 WHERE name = %s", order.name)
		self.assertTrue(frappe.db.is_missing_column(raised.exception))
		self.assertEqual(events_after(start, ORDER), [])
