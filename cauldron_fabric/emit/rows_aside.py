"""Child table rows put aside for their parents' held updates (``rows.py``), in the database.

A statement over a child table may change the rows of every document of a DocType: their
tables as they were are copied into one temporary table per child DocType and transaction
(``session_tables.py``), which a held change's ``before`` names (``RowsAside``) until its
update is recorded, and which is dropped when the transaction ends.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.held import when_transaction_ends
from cauldron_fabric.emit.session_tables import copy_of, drop


class RowsAside:
	"""A table's rows as they were, in a temporary table (a held change's ``before`` value)."""

	__slots__ = ("doctype", "table")

	def __init__(self, doctype: str, table: str) -> None:
		self.doctype = doctype
		self.table = table


# The open transaction's temporary tables of rows put aside, by child DocType, and the
# connection they are on.
ASIDE = "fabric_rows_aside"


def _aside_table(doctype: str) -> RowsAside:
	"""Returns the temporary table of ``doctype``'s rows put aside in the open transaction,
	created on first use and dropped when the transaction ends."""
	connection = frappe.db._conn
	tables = getattr(frappe.local, ASIDE, None)
	if tables is None or tables[0] is not connection:
		tables = (connection, {})
		setattr(frappe.local, ASIDE, tables)
		when_transaction_ends(lambda: _drop_aside(tables))
	aside = tables[1].get(doctype)
	if aside is None:
		aside = tables[1][doctype] = RowsAside(doctype, copy_of(doctype, "rows_before"))
	return aside


def _drop_aside(tables: tuple) -> None:
	if getattr(frappe.local, ASIDE, None) is tables:
		setattr(frappe.local, ASIDE, None)
	if getattr(frappe.local, "db", None) is not None and frappe.db._conn is tables[0]:
		for aside in tables[1].values():
			drop(aside.table)
