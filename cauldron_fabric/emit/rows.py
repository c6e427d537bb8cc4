"""Rows changed alone (a child table row inserted, saved, db_set or deleted by itself) as their
parent's update.

Such changes are held per parent and recorded as one update of the parent: at commit, just
before the parent's own next event (a save, db_set, delete or rename of it, which compares with
the version stored before that write), or right after the event of a save they were made during
(what its hooks changed through other objects; also when those hooks committed, which recorded
them before that event).
"""

from __future__ import annotations

from typing import Any

import frappe

from cauldron_fabric.core.sql_kinds import unlimited
from cauldron_fabric.emit.changes import document_changes, document_payload, row_payload
from cauldron_fabric.emit.document_events import (
	READ_TOGETHER,
	controller_of,
	lifecycle_envelope,
	loads_as_stored,
	stored_document,
	stored_documents,
)
from cauldron_fabric.emit.held import (
	held_now,
	hold_from_the_next_transaction,
	hold_until_commit,
	release,
)
from cauldron_fabric.emit.inserts import being_saved, save_running
from cauldron_fabric.emit.policy import DB_UPDATE, SET_VALUE, SQL, current_policy
from cauldron_fabric.emit.recorder import record, recorded_together
from cauldron_fabric.emit.row_parents import (
	_in_currently_saving,
	_kind_of,
	_parent_key,
	_read_together,
	parents_of,
)
from cauldron_fabric.emit.rows_aside import RowsAside, _aside_table
from cauldron_fabric.emit.session_tables import run
from cauldron_fabric.emit.unrecorded import log_once

# Rows changed alone, held per parent until the parent's update is recorded: outside the
# parent's save (recorded at commit, or before the parent's next event), and inside it.
ROW_CHANGES = "fabric_row_changes"
ROW_CHANGES_IN_SAVE = "fabric_row_changes_in_save"
# Rows written by frappe.db.set_value, db_update (emit/set_values.py) or raw SQL
# (emit/sql_writes.py): Frappe checks nothing on such a write, and a schema registered before
# the upgrade that records them allows no such ``via``, so their parent's update is never
# refused for its event (kept Invalid instead).
WRITES_WITHOUT_HOOKS = frozenset({SET_VALUE, DB_UPDATE, SQL})


def row_changed(row, via: str | None = None, removed: bool = False, parents: dict | None = None) -> None:
	"""Notes a row inserted, saved, db_set or deleted alone: its parent's update, at commit.

	Frappe writes a parent's rows without running their hooks, so a row's own hooks fire only
	when code changed that row directly (ERPNext db_sets billed amounts row by row): the
	parent's table changed all the same. All such changes of one parent in a transaction are
	one ``<parent>.updated`` event at commit, its changes running from the table as it was
	before the first of them to the table as committed. A change made while the parent itself
	is being saved is held apart, for the save to follow up on (record_rows_changed_in_save).
	``parents``, when given, are the rows' parents as read already (``parents_of``).
	"""
	parent_key = _parent_key(row.parenttype, row.parent)
	parent_in_memory = getattr(row, "parent_doc", None)  # set on rows loaded with their parent
	# Frappe's defaults hang under "__default", no DocType.
	if not all(parent_key) or row.parenttype.startswith("__"):
		return
	in_save = (
		_in_currently_saving(*parent_key) or (parent_in_memory is not None and being_saved(parent_in_memory))
	) and save_running(*parent_key)
	attribute = ROW_CHANGES_IN_SAVE if in_save else ROW_CHANGES
	change = _held_change(attribute, parent_key, via)
	if change is not None and row.parentfield in change["before"]:
		return  # the table as it was is known already
	kind = _kind_of(row.parenttype)
	if kind is None:
		return
	parent = (
		parents[parent_key] if parents is not None and parent_key in parents else stored_document(*parent_key)
	)
	if parent is None:
		return
	rows = document_payload(parent).get(row.parentfield) or []
	if removed:
		before_rows = sorted([*rows, row_payload(row)], key=lambda r: r.get("idx") or 0)
	elif row.flags.in_insert:
		# A raw INSERT of several rows (sql_inserts.py): none of them was in the table before.
		inserted_with = row.flags.get("fabric_inserted_with") or ()
		before_rows = [r for r in rows if r.get("name") != row.name and r.get("name") not in inserted_with]
	else:
		before = row.get_doc_before_save()
		before_rows = (
			None
			if before is None
			else [row_payload(before) if r.get("name") == row.name else r for r in rows]
		)
	if change is None:
		change = _hold_change(attribute, parent_key, kind, via)
	change["before"][row.parentfield] = before_rows


def row_about_to_change(row, via: str, parents: dict | None = None) -> None:
	"""Notes a child table row about to be written alone (as stored now; None: gone): its
	parent's update, at commit."""
	if row is None:
		return
	# The row as stored now is the "before" side of the parent's table (the table as stored
	# when first noted, compared with the table as committed).
	row._doc_before_save = row
	row_changed(row, via=via, parents=parents)


def rows_about_to_change(doctype: str, names: list, via: str) -> None:
	"""Notes the rows ``names`` of the child table ``doctype``, about to be written by one
	statement (a raw UPDATE or DELETE, a set_value by filters), as row_changed notes one row:
	each parent's update at commit.

	A statement over a child table may touch the rows of every document of a DocType: each
	parent's table as it is now (about 24 KB of payload for ten rows) is copied into a
	temporary table of the database session (``session_tables.py``), not held in memory, and
	read back from there when the update is recorded. Where the database will not copy them,
	or the parent loads its own way (``loads_as_stored``), they are held as row_changed holds them.
	"""
	for start in range(0, len(names), READ_TOGETHER):
		chunk = names[start : start + READ_TOGETHER]
		placed = frappe.db.sql(
			unlimited(
				f"SELECT DISTINCT `parenttype`, `parentfield`, `parent` FROM `tab{doctype}` WHERE `name` IN %s"
			),
			(chunk,),
		)
		if not _put_aside(doctype, placed, via):
			# Read whole and held in memory: the rows, and their parents together.
			stored = stored_documents(doctype, chunk)
			parents = parents_of(stored.values())
			for row in stored.values():
				row_about_to_change(row, via, parents)


def tables_about_to_change(doctype: str, placed, via: str) -> bool:
	"""Puts aside the tables (``placed``: parent DocType, table field, parent) that rows of
	``doctype`` about to be written belong to, and notes each parent's update at commit, as
	rows_about_to_change does for rows already stored (here: rows about to be inserted, whose
	parents the statement names); False, noting nothing, when they must be held in memory
	(after the statement) instead."""
	placed = list(placed)
	return all(
		_put_aside(doctype, placed[start : start + READ_TOGETHER], via)
		for start in range(0, len(placed), READ_TOGETHER)
	)


def _put_aside(doctype: str, placed, via: str) -> bool:
	"""Copies the tables of rows of ``doctype`` (``placed``: their parent DocTypes, fields and
	parents) that no held change knows yet, and notes each parent's change; False (nothing
	noted) when they must be held in memory instead."""
	wanted: dict[tuple[str, str], list] = {}
	noted = []
	for parenttype, parentfield, parent in placed:
		parent_key = _parent_key(parenttype, parent)
		if not all(parent_key) or not parentfield or parenttype.startswith("__"):
			continue
		kind = _kind_of(parenttype)
		if kind is None:
			continue
		if not loads_as_stored(parenttype):
			return False
		in_save = _in_currently_saving(*parent_key) and save_running(*parent_key)
		attribute = ROW_CHANGES_IN_SAVE if in_save else ROW_CHANGES
		change = _held_change(attribute, parent_key, via)
		if change is not None and parentfield in change["before"]:
			continue  # the table as it was is known already
		wanted.setdefault((parenttype, parentfield), []).append(parent_key[1])  # as text, as stored
		noted.append((attribute, parent_key, kind, parentfield, change))
	if not noted:
		return True
	try:
		aside = _aside_table(doctype)
		for (parenttype, parentfield), parents in wanted.items():
			where = "WHERE `parenttype` = %s AND `parentfield` = %s AND `parent` IN %s"
			# What an earlier change of these parents put aside (since recorded, or dropped by a
			# failed copy) goes first: the copy holds each parent's table once.
			run(f"DELETE FROM `{aside.table}` {where}", (parenttype, parentfield, parents))
			run(
				f"INSERT INTO `{aside.table}` SELECT * FROM `tab{doctype}` {where}",
				(parenttype, parentfield, parents),
			)
	except (frappe.QueryDeadlockError, frappe.QueryTimeoutError):
		raise  # the statement waits on the same locks (see unrecorded.read_or_refused)
	except Exception as error:
		log_once(
			f"rows aside {doctype}",
			"Cauldron Fabric could not put aside the %s rows a statement changes in a temporary "
			"table (%s): it holds their parents' tables in memory until the commit",
			doctype,
			error,
		)
		return False
	for attribute, parent_key, kind, parentfield, change in noted:
		if change is None:
			change = _held_change(attribute, parent_key, via) or _hold_change(
				attribute, parent_key, kind, via
			)
		change["before"][parentfield] = aside
	return True


def _held_change(attribute: str, parent_key: tuple, via: str | None) -> dict | None:
	"""Returns the change held for the parent ``parent_key`` under ``attribute`` (None when
	none), a change by ``via`` noted in it."""
	change = held_now(attribute).get(parent_key)
	if change is not None:
		if change["via"] != via:
			change["via"] = None  # db_sets and other changes together: a plain update
		if via in WRITES_WITHOUT_HOOKS:
			change["unjudged"] = True  # mixed with other changes too
	return change


def _hold_change(attribute: str, parent_key: tuple, kind: str, via: str | None) -> dict:
	"""Holds a new change of the parent ``parent_key`` under ``attribute``, for its tables as
	they were (``before``, by table field) to be noted in."""
	flush = record_rows_changed_in_saves if attribute == ROW_CHANGES_IN_SAVE else record_row_changes
	held = hold_until_commit(attribute, flush)
	change = held[parent_key] = {
		"kind": kind,
		"via": via,
		"before": {},
		"unjudged": via in WRITES_WITHOUT_HOOKS,
	}
	return change


def record_row_changes() -> None:
	"""Records one update per parent whose rows changed alone in this transaction (before_commit)."""
	_record_held_row_changes(ROW_CHANGES)


def record_rows_changed_in_saves() -> None:
	"""Records the row changes made during a parent's save that no end of that save recorded
	(it raised and was caught, or the change came from a hook running after its event).

	A save still running committed from its own hooks: its event, still to come, carries the
	saved object's rows, which do not hold these changes, so they are held again for an update
	right after that event, starting from the tables as this commit left them.
	"""
	for parent_key, change, parent in _record_held_row_changes(ROW_CHANGES_IN_SAVE, save_running):
		doc = document_payload(parent)
		again = {**change, "before": {field: doc.get(field) or [] for field in change["before"]}}
		hold_from_the_next_transaction(ROW_CHANGES_IN_SAVE, record_rows_changed_in_saves, parent_key, again)


def _record_held_row_changes(attribute: str, kept=None) -> list[tuple]:
	"""Records the row changes held under ``attribute``; returns those recorded whose parent's
	key ``kept(doctype, name)`` says to keep, as (parent's key, change, parent as stored).

	Many parents (a raw statement over a child table) are read and recorded together, so many
	at a time, and only those kept stay in memory.
	"""
	recorded = []
	held = list(release(attribute).items())
	for start in range(0, len(held), READ_TOGETHER):
		chunk = held[start : start + READ_TOGETHER]
		# Let go of each chunk's changes once recorded: their tables as they were, read back
		# here, would otherwise all stay in memory until the last chunk.
		held[start : start + READ_TOGETHER] = [None] * len(chunk)
		parents = _read_together(key for key, _ in chunk)
		_take_back(chunk)
		with recorded_together():
			for parent_key, change in chunk:
				parent = parents.get(parent_key)
				if parent is not None:  # else deleted since
					_record_row_change(parent, change)
					if kept is not None and kept(*parent_key):
						recorded.append((parent_key, change, parent))
	return recorded


def record_rows_changed_in_save(doc, reported: dict[str, Any] | None) -> None:
	"""Records, right after a save's event, what its hooks changed in its rows through other objects.

	The save's event carries the rows the saved object holds. A hook that changes a row
	through another object (the row loaded on its own, or through another copy of the parent)
	after the save wrote its rows commits a table that event does not show: an update follows,
	from the table the event reported (``reported``; None when the save recorded no event, then
	the saved object's) to the table as stored. A row changed through the saved object itself
	is in its event already, and one changed before the save wrote its rows was overwritten by
	them: both leave nothing to add.
	"""
	change = held_now(ROW_CHANGES_IN_SAVE).pop(_parent_key(doc.doctype, doc.name), None)
	parent = stored_document(doc.doctype, doc.name) if change is not None else None
	if parent is None:
		return
	if reported is None:
		reported = document_payload(doc)
	change["before"] = {field: reported.get(field) or [] for field in change["before"]}
	_record_row_change(parent, change, unchanged=False)


def rows_changed_alone(doctype: str, name) -> bool:
	"""Tells whether rows of the document ``doctype`` ``name`` changed alone in this transaction
	and wait for the commit (record_rows_changed_before records them)."""
	return _parent_key(doctype, name) in held_now(ROW_CHANGES)


def record_rows_changed_before(doctype: str, name: str, parent) -> None:
	"""Records now the update of a parent whose rows changed alone, up to the version ``parent``.

	The parent itself is being saved or db_set in the same transaction, and its own event
	compares with ``parent`` (the version stored before that write): the rows' update goes
	first and ends there. Left for the commit, it would come after the parent's own event
	(after its ``submitted``, say) and repeat what that event changed in the table.
	"""
	held = held_now(ROW_CHANGES)
	if not held or parent is None:
		return
	parent_key = _parent_key(doctype, name)
	change = held.pop(parent_key, None)
	if change is not None:
		_take_back([(parent_key, change)])
		_record_row_change(parent, change)


def _take_back(changes: list[tuple]) -> None:
	"""Reads back the tables put aside for ``changes`` (parent's key, change) into their
	``before``, a query per temporary table for all."""
	wanted: dict[tuple, dict] = {}  # (parent DocType, copy) -> parent's name -> the change
	for (parenttype, name), change in changes:
		for aside in change["before"].values():
			if isinstance(aside, RowsAside):
				wanted.setdefault((parenttype, aside), {})[name] = change
	for (parenttype, aside), by_name in wanted.items():
		names = list(by_name)
		put_aside: dict[tuple[str, str], list] = {}
		controller = controller_of(aside.doctype)
		for row in frappe.db.sql(
			unlimited(
				f"SELECT * FROM `{aside.table}` WHERE `parenttype` = %s AND `parent` IN %s ORDER BY `parent`, `idx`"
			),
			(parenttype, names),
			as_dict=True,
		):
			row.doctype = aside.doctype
			put_aside.setdefault((row.parent, row.parentfield), []).append(controller(row))
		for name, change in by_name.items():
			for field, rows in change["before"].items():
				if rows is aside:
					change["before"][field] = put_aside.get((name, field), [])


def _record_row_change(parent, change: dict[str, Any], unchanged: bool | None = None) -> None:
	"""Records the update of ``parent`` whose rows changed alone, ending at ``parent``'s table.

	One that changed nothing is recorded when ``unchanged`` says so (by default, as Fabric
	Settings say for saves).
	"""
	doc = document_payload(parent)
	before = change["before"]
	diff = None
	if all(rows is not None for rows in before.values()):
		diff = document_changes(before, {field: doc.get(field) or [] for field in before})
		if unchanged is None:
			unchanged = current_policy().unchanged_saves
		if diff == {} and not unchanged:
			return
	payload: dict[str, Any] = {"doc": doc, "changes": diff}
	if change["via"]:
		payload["via"] = change["via"]
	record([lifecycle_envelope(parent, "updated", payload, change["kind"])], not change.get("unjudged"))
