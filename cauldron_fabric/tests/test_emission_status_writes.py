"""A write without document hooks that moves a submittable document's ``docstatus`` (a patch
that submits or cancels in SQL, a set_value of ``docstatus``) is its ``submitted`` or
``cancelled`` event, with ``business.transaction``, as a submit or cancel through the document
is: consumers that act on submits see it (emit/document_events.py ``STATUS_ACTIONS``).
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.registry.doctypes import refresh_doctype_schemas
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	events_after,
	last_seq,
	new_order,
	payload,
	types_of,
)

TABLE = f"`tab{ORDER}`"
SUBMITTED = "fabric_test_order.submitted"
CANCELLED = "fabric_test_order.cancelled"
UPDATED = "fabric_test_order.updated"
CREATED = "fabric_test_order.created"
BUSINESS = "business.transaction"

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


def statuses_after(start: int) -> list[str]:
	"""Returns the Event Log statuses of the orders' events after ``start``, oldest first."""
	return frappe.db.sql_list(
		"SELECT status FROM `tabEvent Log` WHERE name > %s AND entity = %s ORDER BY name", (start, ORDER)
	)


def submitted_order(title: str):
	"""Returns a new order submitted through its document, committed."""
	order = new_order(title)
	order.submit()
	frappe.db.commit()
	return order


class TestStatusMovedWithoutHooks(EmissionCase):
	def setUp(self):
		super().setUp()
		refresh_doctype_schemas(ORDER)  # as a migrate does: the derived schemas take via
		frappe.db.commit()

	def test_a_set_value_of_docstatus_1_is_a_submit(self):
		order = new_order("submitted by set_value")
		frappe.db.commit()
		start = last_seq()
		frappe.db.set_value(ORDER, order.name, "docstatus", 1)
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [SUBMITTED, BUSINESS])
		submitted, business = events
		self.assertEqual(payload(submitted)["via"], "set_value")
		self.assertEqual(payload(submitted)["changes"], {"docstatus": {"old": 0, "new": 1}})
		self.assertEqual(payload(submitted)["doc"]["docstatus"], 1)
		self.assertEqual(business["data"]["action"], "submitted")
		self.assertEqual((payload(business)["name"], payload(business)["docstatus"]), (order.name, 1))
		self.assertEqual(payload(business)["grand_total"], 120.5)
		# The order's derived schemas take a submit that says what it changed and how.
		self.assertNotIn("Invalid", statuses_after(start))
		self.assertTrue(frappe.db.exists("Event Schema", {"subject": SUBMITTED}))

	def test_a_raw_update_to_docstatus_2_is_a_cancel_of_each_document(self):
		first, second = submitted_order("cancel raw a"), submitted_order("cancel raw b")
		start = last_seq()
		frappe.db.sql(
			f"UPDATE {TABLE} SET docstatus = 2, note = 'cancelled in a patch' WHERE name IN (%s, %s)",
			(first.name, second.name),
		)
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [CANCELLED, BUSINESS, CANCELLED, BUSINESS])
		# Each order's cancel, then its business transaction (in the order the statement read them).
		pairs = [(e["data"]["entityId"], e["data"]["action"]) for e in events]
		self.assertEqual(pairs[0::2], pairs[1::2])
		self.assertEqual(sorted(pairs[0::2]), sorted([(first.name, "cancelled"), (second.name, "cancelled")]))
		cancelled = events[0]
		self.assertEqual(payload(cancelled)["via"], "sql")
		self.assertEqual(
			payload(cancelled)["changes"],
			{"docstatus": {"old": 1, "new": 2}, "note": {"old": None, "new": "cancelled in a patch"}},
		)

	def test_a_db_set_of_docstatus_is_a_submit(self):
		order = new_order("submitted by db_set")
		frappe.db.commit()
		start = last_seq()
		order.db_set("docstatus", 1)
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [SUBMITTED, BUSINESS])
		self.assertEqual(payload(events[0])["via"], "db_set")

	def test_other_moves_and_other_writes_stay_updates(self):
		order = submitted_order("stays updated")
		draft = new_order("draft set cancelled")
		frappe.db.commit()
		start = last_seq()
		# A write to a submitted document that leaves its status is an update, as before.
		frappe.db.set_value(ORDER, order.name, "note", "noted after submit")
		# Back to draft, or a draft straight to cancelled: no submit or cancel Frappe makes.
		frappe.db.sql(f"UPDATE {TABLE} SET docstatus = 0 WHERE name = %s", (order.name,))
		frappe.db.sql(f"UPDATE {TABLE} SET docstatus = 2 WHERE name = %s", (draft.name,))
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [UPDATED, UPDATED, UPDATED])
		self.assertEqual(
			[list(payload(e)["changes"]) for e in events], [["note"], ["docstatus"], ["docstatus"]]
		)

	def test_a_docstatus_moved_on_a_doctype_that_cannot_be_submitted_is_an_update(self):
		todo = frappe.get_doc({"doctype": "ToDo", "description": "fabric status of a ToDo"}).insert()
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql("UPDATE `tabToDo` SET docstatus = 1 WHERE name = %s", (todo.name,))
		frappe.db.commit()
		(event,) = events_after(start, "ToDo")
		self.assertEqual(event["type"], "todo.updated")
		self.assertEqual(payload(event)["changes"], {"docstatus": {"old": 0, "new": 1}})

	def test_a_rolled_back_submit_in_sql_is_no_event(self):
		order = new_order("rolled back submit")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(f"UPDATE {TABLE} SET docstatus = 1 WHERE name = %s", (order.name,))
		frappe.db.rollback()
		self.assertEqual(events_after(start, ORDER), [])
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "docstatus"), 0)


class TestInsertedSubmitted(EmissionCase):
	def setUp(self):
		super().setUp()
		refresh_doctype_schemas(ORDER)  # as a migrate does: the derived schemas take via
		frappe.db.commit()

	def test_a_document_inserted_submitted_in_sql_is_created_then_submitted(self):
		name = f"fabric-sql-submitted-{frappe.generate_hash(length=8)}"
		draft = f"fabric-sql-draft-{frappe.generate_hash(length=8)}"
		start = last_seq()
		# As a patch writes documents: with Frappe's standard columns (their schemas require them).
		frappe.db.sql(
			f"INSERT INTO {TABLE} (name, title, company, grand_total, docstatus, owner, modified_by,"
			" creation, modified) VALUES"
			" (%s, 'inserted submitted', 'Cauldron Ltd', 99, 1, 'Administrator', 'Administrator', NOW(6), NOW(6)),"
			" (%s, 'inserted draft', 'Cauldron Ltd', 5, 0, 'Administrator', 'Administrator', NOW(6), NOW(6))",
			(name, draft),
		)
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(
			[(e["type"], e["data"]["entityId"]) for e in events],
			[(CREATED, name), (SUBMITTED, name), (BUSINESS, name), (CREATED, draft)],
		)
		self.assertEqual([payload(e).get("via") for e in events[:2]], ["sql", "sql"])
		self.assertNotIn("changes", payload(events[1]))
		self.assertEqual(payload(events[2])["grand_total"], 99)
		self.assertNotIn("Invalid", statuses_after(start))
