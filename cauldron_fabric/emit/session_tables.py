"""Temporary tables of the site's database session, where the fabric puts aside documents and
rows a statement is about to change (``sql_deletes.py``, ``rows.py``): the database copies
them, nothing comes into Python until their events are recorded, a few hundred at a time.

A temporary table commits nothing and lives as long as the connection. Its rows are the
transaction's, in InnoDB: a rollback (to a savepoint too) takes the rows copied since, as it
takes the changes they were copied for.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

import frappe
from pymysql.cursors import SSCursor

_copy_numbers = count(1)


def copy_of(doctype: str, purpose: str) -> str:
	"""Creates an empty temporary table like ``doctype``'s; returns its name
	(``fabric_<purpose>_<n>``)."""
	table = f"fabric_{purpose}_{next(_copy_numbers)}"
	run(f"CREATE TEMPORARY TABLE `{table}` LIKE `tab{doctype}`")
	return table


def drop(table: str) -> None:
	"""Drops the temporary table ``table``, if it is still there."""
	try:
		run(f"DROP TEMPORARY TABLE IF EXISTS `{table}`")
	except Exception:
		pass  # a connection gone takes its temporary tables with it


def run(query: str, values=None) -> None:
	"""Runs a statement on the site's connection past Frappe's own checks (which take any CREATE
	or DROP in a transaction for one that commits it; a temporary table's does not) and past
	the fabric's raw SQL capture, raising a deadlock or lock wait timeout as Frappe does."""
	try:
		frappe.db._cursor.execute(query, values)
	except Exception as error:
		_raise_as_frappe(error)


def streamed(query: str) -> Iterator[tuple]:
	"""Yields the rows of the SELECT ``query`` (its values in place) as the database sends
	them, a thousand at a time, none kept: for a read of any size. Nothing else may run on
	the connection until the rows are all read."""
	cursor = frappe.db._conn.cursor(SSCursor)
	try:
		cursor.execute(query)
		while rows := cursor.fetchmany(1000):
			yield from rows
	except Exception as error:
		_raise_as_frappe(error)
	finally:
		cursor.close()  # reads what is left unread, freeing the connection


def _raise_as_frappe(error: Exception) -> None:
	"""Raises ``error`` as Frappe would: a deadlock or lock wait timeout as its own errors."""
	db = frappe.db
	if db.is_deadlocked(error):
		raise frappe.QueryDeadlockError(error) from error
	if db.is_timedout(error):
		raise frappe.QueryTimeoutError(error) from error
	raise error
