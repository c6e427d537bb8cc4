"""Writes the fabric makes inside the caller's Frappe transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import frappe

from cauldron_fabric.core.outbox.sql import backslash_escapes


def execute_in_transaction(sql: str, params: Sequence[Any]) -> None:
	"""Runs a write on Frappe's own connection, in the open transaction, exactly as written.

	``frappe.db.sql`` rewrites every query before running it (``ifnull(`` becomes
	``coalesce(`` anywhere in the text), and the outbox and delivery INSERTs carry each
	envelope as a string literal (see core.outbox.sql.text_literal): a document mentioning
	IFNULL( would reach the broker altered. This keeps Frappe's count of the transaction's
	writes (its too-many-writes guard) and hands the statement to the driver unchanged.
	"""
	db = connected_db()
	db.check_transaction_status(sql)
	db._cursor.execute(sql, params)


def escapes_in_literals() -> bool:
	"""Tells whether Frappe's connection reads a backslash in a literal as an escape (it does
	unless the session's sql_mode has NO_BACKSLASH_ESCAPES): how to write the literals the
	fabric's INSERTs carry (core.outbox.sql.text_literal)."""
	return backslash_escapes(connected_db()._conn)


def connected_db():
	"""Returns Frappe's database object, connected (it connects lazily, at its first query)."""
	db = frappe.db
	if not db._conn:
		db.connect()
	return db
