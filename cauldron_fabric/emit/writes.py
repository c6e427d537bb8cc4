"""Writes the fabric makes inside the caller's Frappe transaction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import frappe

from cauldron_fabric.core.outbox.statements import backslash_escapes

# No MariaDB or MySQL server has shipped with a max_allowed_packet under 1 MB, and a character
# takes at most 4 bytes: a statement this long fits without asking the server.
SURELY_FITS = 256 * 1024
# Room in the packet for its header and the command byte.
PACKET_HEADROOM = 1024


def execute_in_transaction(sql: str, params: Sequence[Any]) -> None:
	"""Runs a write on Frappe's own connection, in the open transaction, exactly as written.

	``frappe.db.sql`` rewrites every query before running it (``ifnull(`` becomes
	``coalesce(`` anywhere in the text), and the outbox and delivery INSERTs carry each
	envelope as a string literal (see core.outbox.statements.text_literal): a document mentioning
	IFNULL( would reach the broker altered. This keeps Frappe's count of the transaction's
	writes (its too-many-writes guard) and hands the statement to the driver unchanged.
	"""
	db = connected_db()
	db.check_transaction_status(sql)
	db._cursor.execute(sql, params)


def write_in_fitting_statements(
	rows: Sequence[Any],
	statement: Callable[[Sequence[Any]], tuple[str, Sequence[Any]]],
	too_large: Callable[[Any, int], Any] | None = None,
) -> list[Any]:
	"""Writes ``rows`` with one statement when it fits (see fits_in_one_statement), else one
	statement a row; returns the rows as written.

	``too_large(row, size)``, when given, replaces a row too large even alone with one the
	database takes.
	"""
	sql, params = statement(rows)
	if fits_in_one_statement(sql, params):
		execute_in_transaction(sql, params)
		return list(rows)
	written = []
	for row in rows:
		sql, params = statement([row])
		if too_large is not None and not fits_in_one_statement(sql, params):
			row = too_large(row, len(sql.encode()))
			sql, params = statement([row])
		execute_in_transaction(sql, params)
		written.append(row)
	return written


def fits_in_one_statement(sql: str, params: Sequence[Any] = ()) -> bool:
	"""Tells whether the database takes ``sql`` with ``params`` in one statement.

	A longer statement than max_allowed_packet is refused by the server, which also drops
	Frappe's connection and so fails the user's save: the caller writes its rows in several
	statements instead. A statement of the usual few kilobytes is not measured (a parameter
	takes at most twice its text once escaped, plus its quotes); a longer one is measured as
	the driver will send it.
	"""
	if len(sql) + sum(2 * len(str(value)) + 2 for value in params) <= SURELY_FITS:
		return True
	if params:
		sql = connected_db()._cursor.mogrify(sql, params)
	return len(sql.encode()) <= statement_limit()


def statement_limit() -> int:
	"""Returns how many bytes of SQL the database takes in one statement.

	Read once per connection: a session keeps the max_allowed_packet it connected with.
	"""
	connection = connected_db()._conn
	limit = getattr(connection, "fabric_statement_limit", None)
	if limit is None:
		packet = int(frappe.db.sql("SELECT @@max_allowed_packet")[0][0])
		limit = connection.fabric_statement_limit = packet - PACKET_HEADROOM
	return limit


def escapes_in_literals() -> bool:
	"""Tells whether Frappe's connection reads a backslash in a literal as an escape (it does
	unless the session's sql_mode has NO_BACKSLASH_ESCAPES): how to write the literals the
	fabric's INSERTs carry (core.outbox.statements.text_literal)."""
	return backslash_escapes(connected_db()._conn)


def connected_db():
	"""Returns Frappe's database object, connected (it connects lazily, at its first query)."""
	db = frappe.db
	if not db._conn:
		db.connect()
	return db
