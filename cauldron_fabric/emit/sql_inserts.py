"""Raw SQL inserts as events (``via: sql``): ``frappe.db.bulk_insert``, Frappe's
``frappe.model.document.bulk_insert`` (documents inserted without hooks), and ``INSERT … VALUES``
and ``INSERT … SELECT`` statements in patches.

The statement's rows are read from its text (``core/sql_inserts.py``): the table and each row's
``name`` (a child row's parent too), or for ``INSERT … SELECT`` from its SELECT, which the
fabric runs first (``sql_writes._rows_selected``). Names already stored before it runs
(``INSERT IGNORE`` skips them) are left out. After it runs, each document inserted is its ``created`` event, as
stored (then ``submitted`` when it is stored submitted, as an insert with ``docstatus`` 1 is),
and each child table row inserted is its parent's update at commit.

Frappe's ``bulk_insert`` of documents (``frappe.model.document``) inserts them in one
statement, then their rows in one per child table: the documents it inserts are recorded when
the call is over (at the first write or event after it, or at the commit), each ``created``
with its rows, and their rows are no update of their own. Documents inserted with their rows in
separate statements of another kind (``frappe.db.bulk_insert`` of each table, raw INSERTs) are
``created`` without the rows, then updated with them at commit: the rows are not there yet when
the document's own statement ends.
"""

from __future__ import annotations

import frappe
from frappe.model.document import bulk_insert

from cauldron_fabric.emit.document_events import (
	READ_TOGETHER,
	emit_document_event,
	stored_documents,
	stored_names,
)
from cauldron_fabric.emit.frames import call_of
from cauldron_fabric.emit.held import held_now, hold_until_commit, release, stop_waiting, wait_for_the_end_of
from cauldron_fabric.emit.policy import SQL
from cauldron_fabric.emit.recorder import recorded_together
from cauldron_fabric.emit.rows import parents_of, row_changed, tables_about_to_change

# The columns read from each inserted row.
WANTED = frozenset({"name", "parent", "parenttype", "parentfield"})
# The documents of bulk_insert calls, held until each call is over (see the module's docstring).
BULK_INSERTED = "fabric_bulk_inserted"


class PlannedInsert:
	"""The rows one INSERT is about to insert into a DocType's table, new by name; ``noted``
	when they are child rows whose parents' updates are noted already (their tables put aside
	before the statement: ``rows.tables_about_to_change``)."""

	def __init__(self, doctype: str, names: list, noted: bool = False, call=None) -> None:
		self.doctype = doctype
		self.names = names
		self.noted = noted
		# The frame of the bulk_insert call that inserts these documents and then their rows.
		self.call = call

	def record(self) -> None:
		"""Records each document inserted as ``created``, each row as its parent's update; the
		documents of a bulk_insert once the call is over."""
		if self.noted:
			return
		if self.call is not None:
			hold_until_commit(BULK_INSERTED, record_bulk_inserted)[id(self)] = self
			wait_for_the_end_of(self.call, record_bulk_inserted)
			return
		istable = frappe.get_meta(self.doctype).istable
		inserted = {str(name) for name in self.names}
		for start in range(0, len(self.names), READ_TOGETHER):
			names = self.names[start : start + READ_TOGETHER]
			stored = stored_documents(self.doctype, names)
			parents = parents_of(stored.values()) if istable else None
			with recorded_together():
				for name in names:
					doc = stored.get(str(name))
					if doc is None:
						continue
					if istable:
						doc.flags.in_insert = True
						# The parent's table before this statement: without any row it inserted.
						doc.flags.fabric_inserted_with = inserted
						row_changed(doc, via=SQL, parents=parents)
					else:
						emit_document_event(doc, "created", via=SQL, reject_invalid=False)
						if doc.docstatus == 1 and doc.meta.is_submittable:
							# Inserted submitted, as a save's insert of a submitted document is.
							emit_document_event(doc, "submitted", via=SQL, reject_invalid=False)


def plan_insert(doctype: str, names: list, rows: list[dict] | None = None) -> PlannedInsert | None:
	"""Reads which of the ``names`` an INSERT is about to insert are new (not stored already),
	or returns None when none is.

	``rows``, when given, are the statement's rows (``WANTED`` columns): the new rows of a child
	table have their parents' tables put aside now, before the statement, as an UPDATE's rows
	do, rather than held in memory after it.
	"""
	stored = stored_names(doctype, names)
	new = [name for name in dict.fromkeys(names) if str(name) not in stored]
	if not new:
		return None
	istable = frappe.get_meta(doctype).istable
	call = call_of(bulk_insert)
	if call is not None:
		if not istable:
			return PlannedInsert(doctype, new, call=call)
		if rows is not None:
			new = _without_rows_of_documents_of(call, new, rows)
			if not new:
				return None
	if rows is not None and istable:
		fresh = {str(name) for name in new}
		placed = {
			(row.get("parenttype"), row.get("parentfield"), row.get("parent"))
			for row in rows
			if str(row.get("name")) in fresh
		}
		if all(all(place) for place in placed) and tables_about_to_change(doctype, placed, SQL):
			return PlannedInsert(doctype, new, noted=True)
	return PlannedInsert(doctype, new)


def _without_rows_of_documents_of(call, names: list, rows: list[dict]) -> list:
	"""Returns the ``names`` of child rows but those of documents the bulk_insert ``call``
	inserts: their ``created`` events, recorded when the call is over, carry them."""
	documents = {
		(planned.doctype, str(name))
		for planned in held_now(BULK_INSERTED).values()
		if planned.call is call
		for name in planned.names
	}
	if not documents:
		return names
	theirs = {
		str(row.get("name")) for row in rows if (row.get("parenttype"), str(row.get("parent"))) in documents
	}
	return [name for name in names if str(name) not in theirs]


def record_bulk_inserted() -> None:
	"""Records the documents of bulk_insert calls that are over, each with the rows the call
	inserted after it (see the module's docstring)."""
	stop_waiting()
	for planned in release(BULK_INSERTED).values():
		planned.call = None
		planned.record()
