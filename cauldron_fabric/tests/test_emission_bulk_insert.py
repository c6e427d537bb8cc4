"""Frappe's ``bulk_insert`` of documents (``frappe.model.document``), and patches'
``frappe.db.bulk_insert`` of each table, write documents in one statement and their rows in the
next ones: each document is one ``created`` event with its rows (``submitted`` too when inserted
submitted), recorded at the first other write or event, or at the commit, before anything
written or recorded after its rows (emit/sql_inserts.py).
"""

from __future__ import annotations

import frappe
from frappe.model.document import bulk_insert

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
	types_of,
)

CREATED = "fabric_test_order.created"
SUBMITTED = "fabric_test_order.submitted"
BUSINESS = "business.transaction"

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


def unsaved_order(title: str, items: list[str], docstatus: int = 0):
	"""Returns an order named and with named rows, as bulk_insert takes it (not inserted)."""
	order = frappe.get_doc(
		{
			"doctype": ORDER,
			"title": title,
			"company": "Cauldron Ltd",
			"grand_total": 10.0 * len(items),
			"docstatus": docstatus,
			"items": [{"item": item, "qty": 1} for item in items],
		}
	)
	order.name = f"fabric-bulk-{frappe.generate_hash(length=8)}"
	for idx, row in enumerate(order.items, 1):
		row.update(
			{
				"name": frappe.generate_hash(length=10),
				"parent": order.name,
				"parenttype": ORDER,
				"parentfield": "items",
				"idx": idx,
			}
		)
	return order


def items_of(event: dict) -> list[str]:
	return [row["item"] for row in payload(event)["doc"]["items"]]


class TestBulkInsertOfDocuments(EmissionCase):
	def test_each_document_is_created_with_its_rows(self):
		draft = unsaved_order("bulk draft", ["pot", "lid"])
		submitted = unsaved_order("bulk submitted", ["ladle"], docstatus=1)
		frappe.db.commit()
		start = last_seq()
		bulk_insert(ORDER, [draft, submitted])
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(
			[(e["type"], e["data"]["entityId"]) for e in events],
			[
				(CREATED, draft.name),
				(CREATED, submitted.name),
				(SUBMITTED, submitted.name),
				(BUSINESS, submitted.name),
			],
		)
		self.assertEqual([items_of(e) for e in events[:3]], [["pot", "lid"], ["ladle"], ["ladle"]])
		self.assertEqual([payload(e)["via"] for e in events[:3]], ["sql"] * 3)

	def test_they_come_before_and_as_before_a_write_after_the_call(self):
		order = unsaved_order("bulk then updated", ["pot"])
		frappe.db.commit()
		start = last_seq()
		bulk_insert(ORDER, [order])
		frappe.db.sql(f"UPDATE {TABLE} SET title = 'updated after the bulk' WHERE name = %s", (order.name,))
		other = new_order("saved after the bulk")
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(
			[(e["type"], e["data"]["entityId"]) for e in events],
			[(CREATED, order.name), (UPDATED, order.name), (CREATED, other.name)],
		)
		self.assertEqual(payload(events[0])["doc"]["title"], "bulk then updated")
		self.assertEqual(items_of(events[0]), ["pot"])
		self.assertEqual(
			payload(events[1])["changes"],
			{"title": {"old": "bulk then updated", "new": "updated after the bulk"}},
		)

	def test_an_event_recorded_after_the_call_comes_after_them(self):
		order = unsaved_order("bulk then a ToDo", ["pot"])
		frappe.db.commit()
		start = last_seq()
		bulk_insert(ORDER, [order])
		# A ToDo's insert records its event from its hooks: the order's comes first.
		todo = frappe.get_doc({"doctype": "ToDo", "description": "after the bulk"}).insert()
		frappe.db.commit()
		events = [e for e in events_after(start) if e["data"]["entity"] in (ORDER, "ToDo")]
		self.assertEqual(
			[(e["type"], e["data"]["entityId"]) for e in events],
			[(CREATED, order.name), ("todo.created", todo.name)],
		)

	def test_a_rollback_takes_them_with_the_documents(self):
		order = unsaved_order("bulk rolled back", ["pot"])
		frappe.db.commit()
		start = last_seq()
		bulk_insert(ORDER, [order])
		frappe.db.rollback()
		new_order("after the rollback")
		frappe.db.commit()
		self.assertEqual(types_of(events_after(start, ORDER, order.name)), [])
		self.assertFalse(frappe.db.exists(ORDER, order.name))

	def test_a_rollback_to_a_savepoint_takes_them_too(self):
		kept, undone = unsaved_order("bulk kept", ["pot"]), unsaved_order("bulk undone", ["lid"])
		frappe.db.commit()
		start = last_seq()
		bulk_insert(ORDER, [kept])
		frappe.db.savepoint("fabric_bulk")
		bulk_insert(ORDER, [undone])
		frappe.db.rollback(save_point="fabric_bulk")
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual([(e["type"], e["data"]["entityId"]) for e in events], [(CREATED, kept.name)])
		self.assertEqual(items_of(events[0]), ["pot"])

	def test_new_rows_of_a_document_stored_before_are_its_update(self):
		stored = new_order("stored before the bulk")
		again = unsaved_order("stored before the bulk", ["spoon"])
		again.name = stored.name
		for row in again.items:
			row.parent = stored.name
			row.idx = 3
		fresh = unsaved_order("bulk fresh", ["fork"])
		frappe.db.commit()
		start = last_seq()
		bulk_insert(ORDER, [again, fresh], ignore_duplicates=True)
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(
			[(e["type"], e["data"]["entityId"]) for e in events],
			[(CREATED, fresh.name), (UPDATED, stored.name)],
		)
		self.assertEqual(items_of(events[0]), ["fork"])
		self.assertEqual(items_of(events[1]), ["cauldron", "ladle", "spoon"])


ORDER_FIELDS = ["name", "title", "company", "grand_total", "owner", "modified_by", "creation", "modified"]
ROW_FIELDS = ["name", "parent", "parenttype", "parentfield", "idx", "item", "qty"]


def order_values(order) -> tuple:
	now = frappe.utils.now()
	return (
		order.name,
		order.title,
		order.company,
		order.grand_total,
		"Administrator",
		"Administrator",
		now,
		now,
	)


def row_values(order) -> list[tuple]:
	return [(row.name, order.name, ORDER, "items", row.idx, row.item, row.qty) for row in order.items]


class TestTablesInsertedOneAfterTheOther(EmissionCase):
	"""As a patch writes documents: frappe.db.bulk_insert of the documents, then of their rows."""

	def test_each_document_is_created_with_the_rows_inserted_after_it(self):
		first, second = (
			unsaved_order("table by table a", ["pot"]),
			unsaved_order("table by table b", ["lid", "jar"]),
		)
		frappe.db.commit()
		start = last_seq()
		frappe.db.bulk_insert(ORDER, ORDER_FIELDS, [order_values(first), order_values(second)])
		frappe.db.bulk_insert(ORDER_ITEM, ROW_FIELDS, row_values(first) + row_values(second))
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(
			[(e["type"], e["data"]["entityId"]) for e in events],
			[(CREATED, first.name), (CREATED, second.name)],
		)
		self.assertEqual([items_of(e) for e in events], [["pot"], ["lid", "jar"]])

	def test_rows_inserted_after_another_write_are_the_documents_update(self):
		order = unsaved_order("rows after another write", ["pot"])
		frappe.db.commit()
		start = last_seq()
		frappe.db.bulk_insert(ORDER, ORDER_FIELDS, [order_values(order)])
		# Another table's write between: the order is recorded before it, as stored then.
		frappe.db.sql("UPDATE `tabToDo` SET description = description WHERE name = 'no such ToDo'")
		frappe.db.bulk_insert(ORDER_ITEM, ROW_FIELDS, row_values(order))
		frappe.db.commit()
		created, updated = events_after(start, ORDER)
		self.assertEqual((created["type"], items_of(created)), (CREATED, []))
		self.assertEqual((updated["type"], items_of(updated)), (UPDATED, ["pot"]))
