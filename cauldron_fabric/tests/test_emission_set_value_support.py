"""What the set_value test modules share: bare documents, the reads a write runs, and a write
made after a save that raised."""

from __future__ import annotations

from contextlib import contextmanager

import frappe

from cauldron_fabric.core.sql_kinds import statement_body
from cauldron_fabric.tests.utils import ORDER, events_after, last_seq, new_order, order_hooks

CREATED = "fabric_test_order.created"
UPDATED = "fabric_test_order.updated"


def stored_without_hooks(doctype: str) -> str:
	"""Writes a bare document of ``doctype`` (its row only, no hook or validation) and returns
	its name; a Single's name is its DocType."""
	if frappe.get_meta(doctype).issingle:
		return doctype
	doc = frappe.get_doc({"doctype": doctype, "name": f"fabric-bookkeeping-{frappe.generate_hash(length=8)}"})
	doc.db_insert()
	return doc.name


def refuse(doc, method=None) -> None:
	"""A hook that makes the save fail before it writes anything."""
	frappe.throw("refused")


def write_after_a_refused_save(title: str, write) -> list[dict]:
	"""Inserts an order titled ``title`` and commits; saves it with a validate that refuses,
	then, as a caller that caught the error, calls ``write(order)``, saves the order again as
	"saved again" and commits: returns the events from the refused save on."""
	order = new_order(title)
	frappe.db.commit()
	start = last_seq()
	with order_hooks(__name__, validate="refuse"):
		order.title = "never saved"
		try:
			order.save()
		except frappe.ValidationError:
			pass
		else:
			raise AssertionError("the validate hook let the save through")
	write(order)
	order.reload()
	order.title = "saved again"
	order.save()
	frappe.db.commit()
	return events_after(start, ORDER)


@contextmanager
def reads_of(table: str):
	"""Lists the SELECTs run on ``table`` inside (the real queries, as run; the fabric's after a
	``SET STATEMENT … FOR``)."""
	reads: list[str] = []
	sql = frappe.db.__class__.sql

	def counted(db, query, *args, **kwargs):
		if statement_body(str(query)).lstrip().upper().startswith("SELECT") and f"`tab{table}`" in str(query):
			reads.append(str(query))
		return sql(db, query, *args, **kwargs)

	frappe.db.__class__.sql = counted
	try:
		yield reads
	finally:
		frappe.db.__class__.sql = sql
