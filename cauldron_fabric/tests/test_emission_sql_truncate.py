"""A TRUNCATE (``frappe.db.truncate``, raw ``TRUNCATE TABLE``) is the DELETE of every row it is:
a ``deleted`` event per document, a child table's rows their parents' update, committed with
it, since MariaDB commits before it and nothing rolls it back (emit/sql_writes.py, watch.py).

The tables truncated are this module's own DocTypes: a TRUNCATE cannot be rolled back, and
the other tests' orders must stay.
"""

from __future__ import annotations

import frappe
from frappe.exceptions import ImplicitCommitError
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.emit.policy import SET_VALUES_NONE
from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.utils import (
	ITEM_FIELDS,
	ensure_custom_doctype,
	events_after,
	fabric_settings,
	last_seq,
	payload,
	types_of,
)

JAR = "Fabric Test Jar"
JAR_ITEM = "Fabric Test Jar Item"
DELETED = "fabric_test_jar.deleted"
UPDATED = "fabric_test_jar.updated"

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


def new_jar(title: str, *items: str):
	rows = [{"item": item, "qty": 1} for item in items]
	return frappe.get_doc({"doctype": JAR, "title": title, "items": rows}).insert()


class TestTruncate(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_custom_doctype(JAR_ITEM, ITEM_FIELDS, istable=1)
		fields = [
			{"fieldname": "title", "fieldtype": "Data", "label": "Title"},
			{"fieldname": "items", "fieldtype": "Table", "label": "Items", "options": JAR_ITEM},
		]
		ensure_custom_doctype(JAR, fields, autoname="hash")
		frappe.db.commit()

	def setUp(self):
		frappe.set_user("Administrator")
		frappe.db.delete(JAR)  # (recorded: a raw delete)
		frappe.db.delete(JAR_ITEM)
		frappe.db.commit()

	def test_each_document_truncated_is_a_deleted_event_committed_with_it(self):
		first, second = new_jar("pickles", "gherkin", "dill"), new_jar("empty")
		start = last_seq()
		frappe.db.truncate(JAR)
		frappe.db.rollback()  # nothing rolls the TRUNCATE back, nor its events
		self.assertEqual(frappe.db.count(JAR), 0)
		events = events_after(start, JAR)
		self.assertEqual(types_of(events), [DELETED, DELETED])
		by_name = {event["data"]["entityId"]: payload(event) for event in events}
		self.assertEqual(set(by_name), {first.name, second.name})
		self.assertEqual({p["via"] for p in by_name.values()}, {"sql"})
		self.assertEqual(by_name[first.name]["doc"]["title"], "pickles")
		self.assertEqual([row["item"] for row in by_name[first.name]["doc"]["items"]], ["gherkin", "dill"])
		self.assertEqual(by_name[second.name]["doc"]["items"], [])

	def test_a_truncated_child_table_is_each_parents_update_committed_with_it(self):
		jar, empty = new_jar("jam", "strawberry", "apricot"), new_jar("nothing in it")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(f"TRUNCATE TABLE `tab{JAR_ITEM}`")
		frappe.db.rollback()
		(event,) = events_after(start, JAR)  # the jar without rows is no update
		self.assertEqual((event["type"], event["data"]["entityId"]), (UPDATED, jar.name))
		change = payload(event)["changes"]["items"]
		self.assertEqual([row["item"] for row in change["old"]], ["strawberry", "apricot"])
		self.assertEqual(change["new"], [])
		self.assertEqual(payload(event)["via"], "sql")
		self.assertTrue(frappe.db.exists(JAR, empty.name))

	def test_a_truncate_frappe_refuses_mid_transaction_records_nothing_and_leaves_no_copy(self):
		start = last_seq()
		jar = new_jar("kept", "lid")  # a write in the open transaction: Frappe refuses the TRUNCATE
		with self.assertRaises(ImplicitCommitError):
			frappe.db.sql(f"TRUNCATE `tab{JAR}`")
		frappe.db.commit()
		self.assertTrue(frappe.db.exists(JAR, jar.name))
		self.assertEqual(types_of(events_after(start, JAR)), ["fabric_test_jar.created"])
		copies = frappe.db.sql("SHOW TABLES LIKE 'fabric\\_deleting\\_%%'")
		self.assertEqual(copies, ())

	def test_none_turns_truncates_off_too(self):
		new_jar("off")
		with fabric_settings(capture_set_value=SET_VALUES_NONE):
			start = last_seq()
			frappe.db.truncate(JAR)
			self.assertEqual(events_after(start, JAR), [])
		self.assertEqual(frappe.db.count(JAR), 0)
