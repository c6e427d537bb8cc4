"""Writes the fabric makes inside the caller's Frappe transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import frappe


def execute_in_transaction(sql: str, params: Sequence[Any]) -> None:
	"""Runs a write on Frappe's own connection, in the open transaction, exactly as written.

	``frappe.db.sql`` rewrites every query before running it (``ifnull(`` becomes
	``coalesce(`` anywhere in the text), and the outbox and delivery INSERTs carry each
	envelope as a string literal (see core.outbox.sql.text_literal): a document mentioning
	IFNULL( would reach the broker altered. This keeps Frappe's count of the transaction's
	writes (its too-many-writes guard) and hands the statement to the driver unchanged.
	"""
	db = frappe.db
	if not db._conn:
		db.connect()
	db.check_transaction_status(sql)
	db._cursor.execute(sql, params)
