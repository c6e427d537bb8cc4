"""Raw SQL deletes as events (``via: sql``): ``frappe.db.delete``, query builder deletes and
``DELETE`` statements, one ``deleted`` event per document gone, with the document as it was.

The documents must be read before the statement runs, and their events recorded after it,
for those it did delete. Held in memory in between, a document costs about 24 KB (an order
with ten rows): a statement over a whole table (ERPNext's Delete Company Transactions, a patch
purging old entries) would hold gigabytes. So their rows, and their child tables' rows, are
copied into temporary tables of the database session before it runs (the database copies
them; nothing comes into Python), and read back from there after it, 500 documents at a time.
A temporary table commits nothing, lives as long as the connection, and is dropped as soon as
the events are recorded, or the statement failed.

A DocType Frappe does not build from its rows alone (``stored_documents`` says which), or
whose rows the database will not copy, is read whole before, and held, as before.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.document_events import (
	READ_TOGETHER,
	emit_document_event,
	loads_as_stored,
	stored_documents,
	stored_names,
)
from cauldron_fabric.emit.policy import SQL
from cauldron_fabric.emit.recorder import recorded_together
from cauldron_fabric.emit.rows import record_rows_changed_before
from cauldron_fabric.emit.session_tables import copy_of, drop, run
from cauldron_fabric.emit.unrecorded import log_once

# Names copied per statement into the temporary tables.
COPIED_TOGETHER = 1000


class PlannedDeletion:
	"""The documents one DELETE is about to delete: copied (DocType → temporary table) or, for a
	DocType that loads its own way, read whole."""

	def __init__(self, doctype: str, names: list, copies: dict[str, str] | None, held: dict | None) -> None:
		self.doctype = doctype
		self.names = names
		self.copies = copies
		self.held = held

	def record(self) -> None:
		"""Records ``deleted`` for each document the statement did delete, as it was before."""
		try:
			left = stored_names(self.doctype, self.names)
			gone = [name for name in self.names if str(name) not in left]
			for start in range(0, len(gone), READ_TOGETHER):
				chunk = gone[start : start + READ_TOGETHER]
				if self.held is not None:
					documents = [self.held[str(name)] for name in chunk if str(name) in self.held]
				else:
					documents = stored_documents(self.doctype, chunk, copies=self.copies).values()
				with recorded_together():
					for doc in documents:
						# Rows changed alone before: no parent of that name is left at commit (as after_delete).
						record_rows_changed_before(self.doctype, doc.name, doc)
						emit_document_event(doc, "deleted", via=SQL, reject_invalid=False)
		finally:
			self.discard()

	def discard(self) -> None:
		"""Drops the copies (the statement ran, or failed)."""
		for table in (self.copies or {}).values():
			drop(table)
		self.copies = None


def plan_deletion(doctype: str, names: list, lock: bool) -> PlannedDeletion:
	"""Copies (or reads) the documents ``names`` of ``doctype`` a DELETE is about to delete; with
	``lock``, with locking reads, as last committed (the names were read so)."""
	if not loads_as_stored(doctype):
		return PlannedDeletion(doctype, names, None, stored_documents(doctype, names, lock))
	deletion = PlannedDeletion(doctype, names, {}, None)
	try:
		tables = list(dict.fromkeys(df.options for df in frappe.get_meta(doctype).get_table_fields()))
		for table_doctype in (doctype, *tables):
			deletion.copies[table_doctype] = copy_of(table_doctype, "deleting")
		suffix = " FOR UPDATE" if lock else ""
		for start in range(0, len(names), COPIED_TOGETHER):
			chunk = names[start : start + COPIED_TOGETHER]
			run(
				f"INSERT INTO `{deletion.copies[doctype]}` SELECT * FROM `tab{doctype}` WHERE `name` IN %s{suffix}",
				(chunk,),
			)
			for table_doctype in tables:
				run(
					f"INSERT INTO `{deletion.copies[table_doctype]}` SELECT * FROM `tab{table_doctype}` "
					f"WHERE `parenttype` = %s AND `parent` IN %s{suffix}",
					(doctype, [str(name) for name in chunk]),
				)
	except (frappe.QueryDeadlockError, frappe.QueryTimeoutError):
		deletion.discard()
		raise  # the statement waits on the same locks (see unrecorded.read_or_refused)
	except Exception as error:
		# The database would not copy them (no CREATE TEMPORARY TABLES right, a table of that
		# name already there): read whole and held, as before, never failing the DELETE.
		deletion.discard()
		log_once(
			f"copy {doctype}",
			"Cauldron Fabric could not put aside the %s documents a DELETE deletes in temporary "
			"tables (%s): it holds them in memory until the statement has run",
			doctype,
			error,
		)
		return PlannedDeletion(doctype, names, None, stored_documents(doctype, names, lock))
	except BaseException:
		deletion.discard()
		raise
	return deletion
