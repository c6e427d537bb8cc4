"""Raw SQL writes to Singles' values (``tabSingles``: a row per Single DocType and field) as each
Single's update (``via: sql``), as a set_single_value of those values would be: a patch that
changes settings with ``UPDATE tabSingles SET value = … WHERE doctype = … AND field = …``, or
deletes or inserts such rows.

The statement names the Singles it writes in its rows' ``doctype``: read here before it runs
(the statement's own tables and WHERE; its ORDER BY and LIMIT left out, so a Single or two more
may be read, which then record nothing, as they did not change). sql_writes.py plans each as a
set_value of it: read whole before and after, and recorded when it changed.

Frappe writes the table raw itself where the change has an event of its own or is its own
bookkeeping, and those writes are left alone (``FRAPPES_OWN``): a Single's save and insert
(``update_single``), ``set_single_value`` (watch.py marks it), deleting a DocType, a Single or
fields, renaming a field (a patch's ``rename_field``) or a document (links kept in Singles,
with sql_writes' own list), Customize Form's reset of itself, and the migrate's ``modified``
stamp of a Single synced from its JSON. An INSERT … SELECT into the table, and a statement
this module cannot read, are logged with no event.
"""

from __future__ import annotations

import frappe
from frappe.custom.doctype.customize_form.customize_form import CustomizeForm
from frappe.model import delete_fields
from frappe.model.delete_doc import delete_doc
from frappe.model.document import Document
from frappe.model.utils.rename_field import rename_field
from frappe.modules.import_file import update_modified

from cauldron_fabric.core.sql_inserts import parse_insert
from cauldron_fabric.core.sql_kinds import DELETE, INSERT, LOAD, REPLACE, UPDATE, unlimited
from cauldron_fabric.core.sql_statements import parse_delete, parse_update
from cauldron_fabric.emit.frames import inside_any

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
	return (
		SINGLES in doctypes_named
		and kind in (UPDATE, DELETE, INSERT, REPLACE, LOAD)
		and not inside_any(FRAPPES_OWN)
	)


def singles_written(kind: str, text: str, columns_of) -> set[str] | None:
	"""Returns the DocTypes whose rows in ``tabSingles`` the statement ``text`` is about to write,
	or None when it cannot tell; ``columns_of`` gives the tables' columns (for a join's
	unqualified SET column, see parse_update). A REPLACE comes written as its INSERT (the table
	has no unique key: it inserts alike)."""
	if kind in (INSERT, REPLACE):
		statement = parse_insert(text, DOCTYPE_ONLY)
		if statement is None or statement.table != TABLE:
			return None
		return {str(row["doctype"]) for row in statement.rows if row.get("doctype")}
	statement = parse_update(text, columns_of) if kind == UPDATE else parse_delete(text)
	if statement is None:
		return None
	where = f" WHERE {statement.where}" if statement.where else ""
	written: set[str] = set()
	for target in statement.targets:
		if target.table == TABLE:
			rows = frappe.db.sql(
				unlimited(f"SELECT DISTINCT {target.reference}.`doctype` FROM {statement.refs}{where}")
			)
			written.update(row[0] for row in rows if row[0])
	return written
