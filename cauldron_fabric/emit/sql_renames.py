"""Renames in SQL: an UPDATE that sets a document's ``name``, as its events.

Such an UPDATE is that document's ``renamed`` event (``oldName``, ``newName``), then its
``updated`` when it also changed other columns. The new names are read with the rows before it
runs (the value it sets ``name`` to, in the same SELECT); a value that reads a column the
statement sets before it, or calls a random function, cannot be read so, and such a statement is
logged, with no event (``sql_writes.py``). The document's rows and the links to it stay under
the old name, as the statement leaves them (``frappe.rename_doc`` moves them): a later UPDATE of
the rows' ``parent`` is the new name's update, as any rows moved.
"""

from __future__ import annotations

from cauldron_fabric.core.sql_statements import NEW_NAME, Statement, Target
from cauldron_fabric.emit.document_events import READ_TOGETHER, emit_document_event, stored_documents
from cauldron_fabric.emit.policy import SQL
from cauldron_fabric.emit.recorder import recorded_together
from cauldron_fabric.emit.set_values import ValuesBefore
from cauldron_fabric.emit.sql_reads import _rows_before, _spelled


class PlannedRename:
	"""The documents an UPDATE is about to rename: each as stored before (the values it sets)
	and its new name, read before it runs."""

	def __init__(self, doctype: str, renames: list[tuple[ValuesBefore, object]]) -> None:
		self.doctype = doctype
		self.renames = renames

	def record(self) -> None:
		"""Records each document's ``renamed`` event, then its update when it changed more."""
		for start in range(0, len(self.renames), READ_TOGETHER):
			renames = self.renames[start : start + READ_TOGETHER]
			afters = stored_documents(self.doctype, [new for _, new in renames])
			with recorded_together():
				for before, new in renames:
					after = afters.get(str(new))
					if after is None:
						continue  # renamed again, or deleted, since (by a trigger)
					extra = {"oldName": str(before.name), "newName": str(after.name), "merge": False}
					emit_document_event(after, "renamed", via=SQL, extra=extra, reject_invalid=False)
					emit_document_event(
						after,
						"updated",
						via=SQL,
						before=before.applied_to(after),
						unchanged=False,
						reject_invalid=False,
					)


def _plan_rename(
	statement: Statement, target: Target, doctype: str, columns: set[str]
) -> PlannedRename | None:
	"""Reads the documents an UPDATE that sets ``name`` is about to rename, with their new
	names (see the module's docstring)."""
	rows = _rows_before(statement, target)
	renames = []
	for row in rows:
		new = row.pop(NEW_NAME)
		if new is not None:
			renames.append((ValuesBefore(_spelled(row, columns), doctype=doctype), new))
	return PlannedRename(doctype, renames) if renames else None
