"""What the tests of writes over many documents share: MariaDB's own counts of the statements a
session ran, and smaller chunks to cross their boundaries with a few documents."""

from __future__ import annotations

import frappe

from cauldron_fabric.emit import document_events, recorder, rows, set_values, sql_inserts


def selects_run() -> int:
	"""Returns how many SELECTs this database session has run (MariaDB's own count)."""
	return int(frappe.db.sql("SHOW SESSION STATUS LIKE 'Com_select'")[0][1])


def outbox_inserts_run() -> int:
	"""Returns how many INSERTs this database session has run (MariaDB's own count)."""
	return int(frappe.db.sql("SHOW SESSION STATUS LIKE 'Com_insert'")[0][1])


class chunks_of:
	"""Reads and writes ``size`` documents at a time inside (to cross chunk boundaries with a few)."""

	def __init__(self, size: int) -> None:
		self.size = size

	def __enter__(self):
		self.saved = document_events.READ_TOGETHER, recorder.WRITTEN_TOGETHER
		for module in (document_events, rows, set_values, sql_inserts):
			module.READ_TOGETHER = self.size
		recorder.WRITTEN_TOGETHER = self.size

	def __exit__(self, *exc):
		for module in (document_events, rows, set_values, sql_inserts):
			module.READ_TOGETHER = self.saved[0]
		recorder.WRITTEN_TOGETHER = self.saved[1]
