"""Raw SQL inserts as events (``via: sql``): ``frappe.db.bulk_insert``, Frappe's
``frappe.model.document.bulk_insert`` (documents inserted without hooks), and ``INSERT … VALUES``
and ``INSERT … SELECT`` statements in patches.

The statement's rows are read from its text (``core/sql_inserts.py``): the table and each row's
``name`` (a child row's parent too), or for ``INSERT … SELECT`` from its SELECT, which the
fabric runs first (``sql_reads._rows_selected``). Names already stored before it runs
(``INSERT IGNORE`` skips them) are left out. After it runs, each document inserted is its ``created`` event, as
stored (then ``submitted`` when it is stored submitted, as an insert with ``docstatus`` 1 is),
and each child table row inserted is its parent's update at commit.

A document whose DocType has child tables comes before its rows: Frappe's ``bulk_insert`` of
documents (``frappe.model.document``) inserts them in one statement, then their rows in one per
child table, as patches do with ``frappe.db.bulk_insert`` of each table. Such documents wait
for their rows: they are recorded at the first write statement that is not an INSERT into
their tables or their child tables, or event recorded, after them, or at the commit (as
stored then, before anything else changes them), each ``created`` with its rows; the rows
inserted meanwhile are no update of their own. Rows inserted later are their parent's update
at commit.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.core.sql_kinds import INSERT, doctypes_named
from cauldron_fabric.emit.document_events import (
	READ_TOGETHER,
	emit_document_event,
	stored_documents,
	stored_names,
)
from cauldron_fabric.emit.held import held_now, hold_until_commit, release, stop_waiting, wait_for_rows
from cauldron_fabric.emit.policy import SQL
from cauldron_fabric.emit.recorder import recorded_together
from cauldron_fabric.emit.row_parents import parents_of
from cauldron_fabric.emit.rows import row_changed, tables_about_to_change

# The columns read from each inserted row.
WANTED = frozenset({"name", "parent", "parenttype", "parentfield"})
# Documents inserted before their rows, held while they wait for them (see the module's docstring).
WAITING_FOR_ROWS = "fabric_documents_waiting_for_rows"


class PlannedInsert:
	"""The rows one INSERT is about to insert into a DocType's table, new by name; ``noted``
	when they are child rows whose parents' updates are noted already (their tables put aside
	before the statement: ``rows.tables_about_to_change``)."""

	def __init__(self, doctype: str, names: list, noted: bool = False) -> None:
		self.doctype = doctype
		self.names = names
		self.noted = noted

	def record(self) -> None:
		"""Records each document inserted as ``created``, each row as its parent's update;
		documents of a DocType with child tables once their rows are in (see the module's
		docstring)."""
		if self.noted:
			return
		meta = frappe.get_meta(self.doctype)
		if not meta.istable and meta.get_table_fields():
			hold_until_commit(WAITING_FOR_ROWS, record_waiting_documents)[id(self)] = self
			wait_for_rows(_inserts_rows_of_waiting_documents, record_waiting_documents)
			return
		self.record_now()

	def record_now(self) -> None:
		"""Records each document inserted as ``created`` (as stored now), each row as its
		parent's update."""
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


def plan_insert(
	doctype: str, names: list, rows: list[dict] | None = None, stored: set[str] | None = None
) -> PlannedInsert | None:
	"""Reads which of the ``names`` an INSERT is about to insert are new (not stored already,
	or not in ``stored`` when the caller has read that: ``stored_names``), or returns None when
	none is.

	``rows``, when given, are the statement's rows (``WANTED`` columns): the new rows of a child
	table have their parents' tables put aside now, before the statement, as an UPDATE's rows
	do, rather than held in memory after it.
	"""
	if stored is None:
		stored = stored_names(doctype, names)
	new = [name for name in dict.fromkeys(names) if str(name) not in stored]
	if not new:
		return None
	if rows is not None and frappe.get_meta(doctype).istable:
		new = _without_rows_of_waiting_documents(new, rows)
		if not new:
			return None
		fresh = {str(name) for name in new}
		placed = {
			(row.get("parenttype"), row.get("parentfield"), row.get("parent"))
			for row in rows
			if str(row.get("name")) in fresh
		}
		if all(all(place) for place in placed) and tables_about_to_change(doctype, placed, SQL):
			return PlannedInsert(doctype, new, noted=True)
	return PlannedInsert(doctype, new)


def _without_rows_of_waiting_documents(names: list, rows: list[dict]) -> list:
	"""Returns the ``names`` of child rows but those of documents waiting for their rows: their
	``created`` events carry them."""
	waiting = held_now(WAITING_FOR_ROWS)
	if not waiting:
		return names
	documents = {(planned.doctype, str(name)) for planned in waiting.values() for name in planned.names}
	theirs = {
		str(row.get("name")) for row in rows if (row.get("parenttype"), str(row.get("parent"))) in documents
	}
	return [name for name in names if str(name) not in theirs]


def _inserts_rows_of_waiting_documents(kind: str, query: str) -> bool:
	"""Tells whether a write statement is an INSERT into the tables of the documents waiting for
	their rows, or of their child tables, alone: the documents wait on through it."""
	if kind != INSERT:
		return False
	tables = set()
	for planned in held_now(WAITING_FOR_ROWS).values():
		tables.add(planned.doctype)
		tables.update(df.options for df in frappe.get_meta(planned.doctype).get_table_fields())
	return doctypes_named(query) <= tables


def record_waiting_documents() -> None:
	"""Records the documents waiting for their rows, each with the rows inserted since (see the
	module's docstring)."""
	stop_waiting()
	for planned in release(WAITING_FOR_ROWS).values():
		planned.record_now()
