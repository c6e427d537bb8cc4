"""Raw SQL writes to Singles' values (``tabSingles``: a row per Single DocType and field) as each
Single's update (``via: sql``), as a set_single_value of those values would be: a patch that
changes settings with ``UPDATE tabSingles SET value = … WHERE doctype = … AND field = …``, or
deletes or inserts such rows.

The statement names the Singles it writes in its rows' ``doctype``: read before it runs (the
statement's own tables and WHERE; its ORDER BY and LIMIT left out, so a Single or two more may
be read, which then record nothing, as they did not change). Each is read whole before and
after, and recorded when it changed.

Frappe writes the table raw itself where the change has an event of its own or is its own
bookkeeping, and those writes are left alone (``FRAPPES_OWN``): a Single's save and insert
(``update_single``), ``set_single_value`` (watch.py marks it), deleting a DocType, a Single or
fields, renaming a field (a patch's ``rename_field``) or a document (links kept in Singles,
with sql_writes' own list), Customize Form's reset of itself, and the migrate's ``modified``
stamp of a Single synced from its JSON. An INSERT … SELECT into the table, and a statement
this module cannot read, are logged with no event.
"""

from __future__ import annotations

from collections.abc import Callable

import frappe
from frappe.custom.doctype.customize_form.customize_form import CustomizeForm
from frappe.model import delete_fields
from frappe.model.delete_doc import delete_doc
from frappe.model.document import Document
from frappe.model.utils.rename_field import rename_field
from frappe.modules.import_file import update_modified

from cauldron_fabric.core.sql_inserts import parse_insert
from cauldron_fabric.core.sql_statements import DELETE, INSERT, UPDATE, parse_delete, parse_update
from cauldron_fabric.emit.frames import inside_any
from cauldron_fabric.emit.policy import SQL
from cauldron_fabric.emit.set_values import PlannedWrite, plan_documents

SINGLES = "Singles"
TABLE = "tabSingles"
DOCTYPE_ONLY = frozenset({"doctype"})

FRAPPES_OWN = frozenset(
	function.__code__
	for function in (
		Document.update_single,
		delete_doc,
		delete_fields,
		rename_field,
		CustomizeForm.on_update,
		update_modified,
	)
)


def writes_singles(kind: str, doctypes_named: set[str]) -> bool:
	"""Tells whether a statement of ``kind`` naming the tables ``doctypes_named`` may be a write to
	Singles' values that this module records (not one of Frappe's own, see the docstring)."""
	return SINGLES in doctypes_named and kind in (UPDATE, DELETE, INSERT) and not inside_any(FRAPPES_OWN)


def plan_singles_write(
	kind: str, text: str, watched: Callable[[str], bool], columns_of, unreadable: Callable[[], None]
) -> list[PlannedWrite]:
	"""Reads the Singles a statement writes in ``tabSingles`` and plans each one's update;
	``watched`` tells which DocTypes emit events, ``columns_of`` the tables' columns (for a
	join's unqualified SET column), ``unreadable`` logs a statement this module cannot read."""
	doctypes = _singles_written(kind, text, columns_of)
	if doctypes is None:
		unreadable()
		return []
	writes = []
	for doctype in sorted(doctypes):
		if not watched(doctype) or not frappe.get_meta(doctype).issingle:
			continue
		write = plan_documents(doctype, lambda _doctype, names: names, [doctype], PlannedWrite(doctype, SQL))
		if write is not None:
			writes.append(write)
	return writes


def _singles_written(kind: str, text: str, columns_of) -> set[str] | None:
	"""Returns the DocTypes whose rows in ``tabSingles`` the statement is about to write, or None
	when it cannot tell."""
	if kind == INSERT:
		statement = parse_insert(text, DOCTYPE_ONLY)
		if statement is None or statement.table != TABLE:
			return None
		return {str(row["doctype"]) for row in statement.rows if row.get("doctype")}
	statement = parse_update(text, columns_of) if kind == UPDATE else parse_delete(text)
	if statement is None:
		return None
	targets = [target for target in statement.targets if target.table == TABLE]
	if not targets:
		return set()
	(target,) = targets
	where = f" WHERE {statement.where}" if statement.where else ""
	rows = frappe.db.sql(f"SELECT DISTINCT {target.reference}.`doctype` FROM {statement.refs}{where}")
	return {row[0] for row in rows if row[0]}
