"""The reads that plan a raw SQL write's events: the rows a statement is about to write (or an
INSERT … SELECT to insert), and the columns and unique keys of the tables it writes.

The fabric's reads of the rows a statement is about to write are exempt from the session's
``max_join_size`` (``unlimited``): a server's guard against runaway SELECTs refused them, not
the UPDATE or DELETE examining the same rows, which ran with no event.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.core.sql_inserts import InsertSelect
from cauldron_fabric.core.sql_kinds import unlimited
from cauldron_fabric.core.sql_statements import Statement, Target
from cauldron_fabric.emit.session_tables import streamed
from cauldron_fabric.emit.sql_doctypes import doctype_of
from cauldron_fabric.emit.sql_inserts import WANTED
from cauldron_fabric.emit.unrecorded import read_or_refused


def _rows_before(statement: Statement, target: Target, as_dict: bool = True) -> list:
	"""Reads the names (and the columns set) of the rows the statement is about to write in
	``target``, as dicts or (``as_dict`` false) tuples, the name first; raises ReadRefused when
	the database refuses the read.

	The statement writes the rows as last committed, which a plain read in a transaction that
	has read before does not see (REPEATABLE READ: a snapshot, as of its first read): another
	user's commit since would be a row written with no event, or an event with stale values.
	A statement of one table is read with a locking read, which sees them and takes the locks
	the statement takes next; a join is read from the snapshot, for a locking read would lock
	the rows of the tables it only reads too.
	"""
	with read_or_refused():
		return frappe.db.sql(
			unlimited(statement.select_before(target, lock=not statement.joined)), as_dict=as_dict
		)


def _rows_selected(statement: InsertSelect) -> list[dict]:
	"""Runs the SELECT of an INSERT … SELECT for the rows it is about to insert: the values of
	the ``WANTED`` columns in its column list; raises ReadRefused when the database refuses the read.

	The read sees the transaction's snapshot, as a join's does (see _rows_before): the
	statement itself reads its rows as last committed. Its rows are streamed, only the
	columns wanted kept: a patch may copy a whole table.
	"""
	columns = [column.lower() for column in statement.columns]
	positions = {column: index for index, column in enumerate(columns) if column in WANTED}
	with read_or_refused():  # (fewer columns than the statement lists: an IndexError, refused too)
		return [
			{column: row[index] for column, index in positions.items()}
			for row in streamed(unlimited(statement.select))
		]


def _columns_of(table: str) -> set[str] | None:
	"""Returns the columns of the DocType table ``table`` (lowercase), None for another table:
	how an unqualified SET column of a join finds its table (core/sql_statements.py)."""
	if doctype_of(table) is None:
		return None
	return {column.lower() for column in frappe.db.get_db_table_columns(table)} or None


def _table_columns(doctype: str, written: frozenset[str]) -> frozenset[str] | None:
	"""Returns the columns ``written`` as the table spells them, or None when it lacks one (or
	there is no table: Frappe's get_table_columns would raise an error of its own, not the
	database's, which a patch catches with frappe.db.is_table_missing)."""
	spelled = {column.lower(): column for column in frappe.db.get_db_table_columns(f"tab{doctype}")}
	columns = {spelled.get(column.lower()) for column in written}
	return None if None in columns else frozenset(columns)


def _spelled(row: dict, columns: frozenset[str]) -> dict:
	"""Returns ``row`` (read under the statement's column names) under the table's spelling."""
	by_lower = {column.lower(): column for column in columns}
	return {by_lower.get(key.lower(), key): value for key, value in row.items()}


def _other_unique_keys(doctype: str) -> list[str]:
	"""Returns the names of the unique keys of ``doctype``'s table other than its primary key."""
	keys = frappe.db.sql(f"SHOW INDEX FROM `tab{doctype}` WHERE Non_unique = 0 AND Key_name != 'PRIMARY'")
	return sorted({row[2] for row in keys})
