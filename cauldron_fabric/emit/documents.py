"""Document lifecycle events from ``doc_events``: one handler per hook, no per-DocType code.

Frappe ends every save path (insert, save, submit, cancel, update after submit) with
``on_change``, and ``db_set`` fires ``before_change`` then ``on_change``. So ``before_change``
marks a db_set, and ``on_change`` emits either that update or the save's actions. A db_set
made while its document is being saved (from the document's own hooks) is held back: the
save's one event carries the value, and only a db_set whose save never completed (it raised
and was caught) is recorded at commit. Deletion and renaming have hooks of their own. Data
import and patches save through the same paths, so their changes are emitted too (Frappe's
own webhooks skip them).
"""

from __future__ import annotations

from typing import Any

import frappe
from frappe.utils import get_datetime

from cauldron_fabric.core.naming import BUSINESS_TRANSACTION, SYSTEM_CHANGE, document_event_type
from cauldron_fabric.emit.changes import document_changes, document_payload, row_payload
from cauldron_fabric.emit.frames import argument_of
from cauldron_fabric.emit.held import held_now, hold_until_commit, release
from cauldron_fabric.emit.inserts import inserted_through_another_object
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.recorder import new_envelope, record

SAVE_ACTIONS = {
	"save": "updated",
	"submit": "submitted",
	"cancel": "cancelled",
	"update_after_submit": "updated_after_submit",
}
BUSINESS_ACTIONS = ("submitted", "cancelled")
BUSINESS_FIELDS = (
	"company",
	"customer",
	"supplier",
	"party_type",
	"party",
	"posting_date",
	"transaction_date",
	"grand_total",
	"base_grand_total",
	"currency",
	"status",
)
BUSINESS_DAYS = ("posting_date", "transaction_date")
# Rows changed alone, held per parent until the parent's update is recorded: outside the
# parent's save (recorded at commit, or before the parent's next event), and inside it.
ROW_CHANGES = "fabric_row_changes"
ROW_CHANGES_IN_SAVE = "fabric_row_changes_in_save"
# db_sets (and saves of copies) inside saves, held until that save emits or until commit.
DEFERRED_DB_SETS = "fabric_deferred_db_sets"


def mark_db_set(doc, method=None) -> None:
	"""Marks the next on_change as coming from db_set (before_change fires only there)."""
	# db_set returns before on_change on a document without a name: a mark would turn the
	# later insert into a db_set update.
	if doc.name is not None:
		doc.flags.fabric_db_set = True
		if (
			not _being_saved(doc)
			and not doc.flags.in_delete
			and not _is_row(doc)
			and current_policy().kind_of(doc.doctype)
		):
			# The object may be older than the row (loaded before another save, or reloaded
			# since its last event): the row as stored before this write is the "old" side.
			doc.flags.fabric_db_set_before = _stored(doc.doctype, doc.name)
			record_rows_changed_before(doc.doctype, doc.name, doc.flags.fabric_db_set_before)


def on_change(doc, method=None) -> None:
	"""Emits the event(s) of the save or db_set that just wrote ``doc``."""
	via_db_set = doc.flags.pop("fabric_db_set", False)
	stored_before = doc.flags.pop("fabric_db_set_before", None)
	if doc.flags.in_delete:
		return
	if _is_row(doc):
		row_changed(doc, via="db_set" if via_db_set else None)
		return
	if not current_policy().kind_of(doc.doctype):
		if not via_db_set:
			_record_business_transaction_alone(doc)
		return
	if via_db_set:
		if _being_saved(doc):
			_defer_db_set(doc)
		else:
			# db_set wrote some columns; the rest of the object may be stale: the event carries
			# the row as stored.
			emit_document_event(
				_stored(doc.doctype, doc.name) or doc, "updated", via="db_set", before=stored_before
			)
		return
	if not doc.flags.in_insert and doc.get("__islocal") is False:
		# Saved again by its own after_insert: the insert's created event, still to come, carries
		# this save; alone it would be an update before the document's creation.
		_defer_db_set(doc)
		return
	if not doc.flags.in_insert and inserted_through_another_object(doc):
		# A copy saved by a hook of the document's insert: its update follows the created event.
		doc.flags.fabric_deferred_save = True
		_defer_db_set(doc)
		return
	deferred = held_now(DEFERRED_DB_SETS)
	if deferred.get((doc.doctype, doc.name)) is doc:
		# This save's event carries the values its own hooks db_set.
		del deferred[doc.doctype, doc.name]
	# A commit in this save's own hooks recorded the save so far (record_deferred_db_sets):
	# this event carries only what changed since.
	recorded = doc.flags.pop("fabric_recorded_mid_save", None)
	if doc.flags.in_insert:
		if not _row_written_by_insert(doc):
			return
		actions = ["updated" if recorded else "created"]
		if doc.docstatus == 1:
			actions.append("submitted")
	else:
		actions = [SAVE_ACTIONS.get(getattr(doc, "_action", None) or "save", "updated")]
		# Rows changed alone before this save: their update comes first, up to the version the
		# save started from (which this save's event compares with).
		record_rows_changed_before(doc.doctype, doc.name, doc.get_doc_before_save())
	reported = None
	for action in actions:
		reported = emit_document_event(doc, action, before=recorded) or reported
	if actions:
		record_rows_changed_in_save(doc, reported["doc"] if reported else None)


def _record_business_transaction_alone(doc) -> None:
	"""Records ``business.transaction`` for a submit or cancel whose lifecycle events are off
	(Fabric Settings may keep business events alone)."""
	if not doc.flags.in_insert and doc.get("__islocal") is False:
		return  # submitted by its own after_insert: the end of the insert records it
	action = SAVE_ACTIONS.get(getattr(doc, "_action", None) or "save")
	if action in BUSINESS_ACTIONS and doc.meta.is_submittable:
		if current_policy().emits_business_transactions(doc.doctype):
			record([_business_envelope(doc, action, document_payload(doc))])


def _row_written_by_insert(doc) -> bool:
	"""Tells whether the row under ``doc``'s name is the one its insert wrote.

	``insert(ignore_if_duplicate=True)`` (Desk's New Folder, the setup wizard's fixtures, basic
	docs at install) swallows the primary key violation on MariaDB and runs every hook all the
	same: the row is the one that was there before, and nothing was created. Frappe stamps a new
	document's ``creation`` itself, so the stored row tells the two apart. Hash-named DocTypes
	retry a collision under a new name instead, so their insert always wrote its row.
	"""
	if doc.meta.issingle or doc.meta.autoname == "hash" or not _inserted_ignoring_duplicates(doc):
		return True  # an insert that hit its row raised: no lookup on the path of every save
	stored = frappe.db.get_value(doc.doctype, doc.name, "creation")
	return stored is None or get_datetime(stored) == get_datetime(doc.creation)


def _inserted_ignoring_duplicates(doc) -> bool:
	"""Tells whether ``doc`` is inside ``insert(ignore_if_duplicate=True)`` (Frappe keeps that
	argument nowhere but in the call)."""
	return bool(argument_of("insert", doc, "ignore_if_duplicate"))


def _is_row(doc) -> bool:
	"""Tells whether ``doc`` is a child table row (changed on its own when its hooks fire)."""
	return bool(doc.get("parentfield")) and doc.meta.istable


def _stored(doctype: str, name: str):
	"""Returns the document as stored now (None when its row is gone), in one read."""
	try:
		return frappe.get_doc(doctype, name)
	except frappe.DoesNotExistError:
		return None


def _being_saved(doc) -> bool:
	"""Tells whether ``doc`` is inside its own insert or save, or is a copy of a document inside
	its insert."""
	# insert() sets __islocal, db_insert() makes it False (so is_new() is false in after_insert
	# and on_update) and insert() deletes it at the end. currently_saving misses inserts: Frappe
	# adds the document there before it has a name.
	is_local = doc.get("__islocal")
	if is_local or is_local is False:
		return True
	if (doc.doctype, doc.name) in (frappe.flags.currently_saving or ()):
		return True
	return inserted_through_another_object(doc)


def _defer_db_set(doc) -> None:
	"""Holds back a db_set (or a save inside an insert) until its save emits, or until commit if
	that save never completes.

	Frappe leaves a save that raised in ``currently_saving``, so "being saved" may never end:
	the commit records what no save covered, and a rollback forgets it all.
	"""
	hold_until_commit(DEFERRED_DB_SETS, record_deferred_db_sets)[doc.doctype, doc.name] = doc


def record_deferred_db_sets() -> None:
	"""Records the held-back db_sets no save covered (before_commit), on rows that exist."""
	for doc in release(DEFERRED_DB_SETS).values():
		# A db_set from the validate of an insert that then failed wrote no row.
		if not current_policy().kind_of(doc.doctype):
			continue
		stored = _stored(doc.doctype, doc.name)
		if stored is None:
			continue
		# The object holds what its failed (or still running) save assigned but never wrote:
		# the event carries the row as committed.
		if doc.get("__islocal") is False:
			# An insert whose row is written but that has not finished (it raised, or its own
			# hooks committed): no created event was recorded yet.
			payload = emit_document_event(stored, "created")
		else:
			before = doc.flags.get("fabric_snapshot") or doc.get_doc_before_save()
			# Unchanged at commit: a rollback to a savepoint undid the db_set (Frappe tells no
			# hook about those), so there is nothing to report.
			via = None if doc.flags.get("fabric_deferred_save") else "db_set"
			payload = emit_document_event(stored, "updated", via=via, before=before, unchanged=False)
		if payload is not None and _being_saved(doc):
			# Maybe a commit inside the save's own hooks: if the save goes on to emit, its event
			# compares with what this one said instead of repeating it.
			doc.flags.fabric_snapshot = doc.flags.fabric_recorded_mid_save = payload["doc"]


def after_delete(doc, method=None) -> None:
	"""Emits ``<doctype>.deleted`` with the document as it was."""
	if _is_row(doc):
		row_changed(doc, removed=True)
	elif current_policy().kind_of(doc.doctype):
		# Rows changed alone before the delete: at commit no parent of that name is left to
		# record their update against, so it goes now, ending at the document as deleted.
		record_rows_changed_before(doc.doctype, doc.name, doc)
		emit_document_event(doc, "deleted")


def doctype_deleted(comment, method=None) -> None:
	"""Emits ``system.change`` for a deleted DocType, from the feed Comment its deletion adds.

	Frappe deletes a DocType without running any hook of the DocType's (its delete path skips
	on_trash and after_delete). The one document hook it does run is the insert of its feed
	entry, a "Deleted" Comment whose subject is the DocType label followed by the name, in the
	same transaction; the Deleted Document row written just before it holds the DocType as it
	was. Deletions inside patches and installs add no feed entry, so they stay silent.
	"""
	if comment.comment_type != "Deleted" or comment.reference_doctype != "DocType":
		return
	prefix = f"{frappe._('DocType')} "
	subject = comment.subject or ""
	if not subject.startswith(prefix):
		return
	name = subject[len(prefix) :]
	if not name or frappe.db.exists("DocType", name) or not current_policy().kind_of("DocType"):
		return
	kept = frappe.db.get_value(
		"Deleted Document",
		{"deleted_doctype": "DocType", "deleted_name": name},
		"data",
		order_by="creation desc",
	)
	values = frappe.parse_json(kept) if kept else {"name": name}
	values["doctype"] = "DocType"
	emit_document_event(frappe.get_doc(values), "deleted")


def row_changed(row, via: str | None = None, removed: bool = False) -> None:
	"""Notes a row inserted, saved, db_set or deleted alone: its parent's update, at commit.

	Frappe writes a parent's rows without running their hooks, so a row's own hooks fire only
	when code changed that row directly (ERPNext db_sets billed amounts row by row): the
	parent's table changed all the same. All such changes of one parent in a transaction are
	one ``<parent>.updated`` event at commit, its changes running from the table as it was
	before the first of them to the table as committed. A change made while the parent itself
	is being saved is held apart, for the save to follow up on (record_rows_changed_in_save).
	"""
	parent_key = _parent_key(row.parenttype, row.parent)
	parent_in_memory = getattr(row, "parent_doc", None)  # set on rows loaded with their parent
	# Frappe's defaults hang under "__default", no DocType.
	if not all(parent_key) or row.parenttype.startswith("__"):
		return
	in_save = _in_currently_saving(*parent_key) or (
		parent_in_memory is not None and _being_saved(parent_in_memory)
	)
	attribute = ROW_CHANGES_IN_SAVE if in_save else ROW_CHANGES
	change = held_now(attribute).get(parent_key)
	if change is not None:
		if change["via"] != via:
			change["via"] = None  # db_sets and other changes together: a plain update
		if row.parentfield in change["before"]:
			return  # the table as it was is known already
	try:
		kind = current_policy().kind_of(row.parenttype)
	except frappe.DoesNotExistError:
		return
	parent = _stored(*parent_key) if kind is not None else None
	if parent is None:
		return
	rows = document_payload(parent).get(row.parentfield) or []
	if removed:
		before_rows = sorted([*rows, row_payload(row)], key=lambda r: r.get("idx") or 0)
	elif row.flags.in_insert:
		before_rows = [r for r in rows if r.get("name") != row.name]
	else:
		before = row.get_doc_before_save()
		before_rows = (
			None
			if before is None
			else [row_payload(before) if r.get("name") == row.name else r for r in rows]
		)
	if change is None:
		held = hold_until_commit(attribute, record_rows_changed_in_saves if in_save else record_row_changes)
		change = held[parent_key] = {"kind": kind, "via": via, "before": {}}
	change["before"][row.parentfield] = before_rows


def _in_currently_saving(doctype: str, name: str) -> bool:
	"""Tells whether Frappe notes a save of ``doctype`` ``name`` (a row's parent, named in a string).

	Autoincrement names are integers in ``currently_saving``. The list is searched in C, not
	copied: Frappe never removes an insert's entry under None, so in a long job it grows with
	every insert.
	"""
	saving = frappe.flags.currently_saving or ()
	if (doctype, name) in saving:
		return True
	return name.isdecimal() and str(int(name)) == name and (doctype, int(name)) in saving


def _parent_key(doctype: str | None, name) -> tuple:
	"""Returns the key of a parent's held row changes: autoincrement names are integers on the
	parent and in ``currently_saving``, strings in the rows' ``parent`` column."""
	return (doctype, None if name is None else str(name))


def record_row_changes() -> None:
	"""Records one update per parent whose rows changed alone in this transaction (before_commit)."""
	_record_held_row_changes(ROW_CHANGES)


def record_rows_changed_in_saves() -> None:
	"""Records the row changes made during a parent's save that no end of that save recorded
	(it raised and was caught, or the change came from a hook running after its event)."""
	_record_held_row_changes(ROW_CHANGES_IN_SAVE)


def _record_held_row_changes(attribute: str) -> None:
	for parent_key, change in release(attribute).items():
		parent = _stored(*parent_key)
		if parent is not None:  # else deleted since
			_record_row_change(parent, change)


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
	parent = _stored(doc.doctype, doc.name) if change is not None else None
	if parent is None:
		return
	if reported is None:
		reported = document_payload(doc)
	change["before"] = {field: reported.get(field) or [] for field in change["before"]}
	_record_row_change(parent, change, unchanged=False)


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
	change = held.pop(_parent_key(doctype, name), None)
	if change is not None:
		_record_row_change(parent, change)


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
	record([_lifecycle_envelope(parent, "updated", payload, change["kind"])])


def before_rename(
	doc, method=None, old: str | None = None, new: str | None = None, merge: bool = False
) -> None:
	"""Records the update of rows changed alone before the rename, under the name they changed under.

	The held change is keyed by the old name: at commit no parent has it any more, and the
	rows' update would vanish. The stored document is the version that update ends at.
	"""
	if old is not None and current_policy().kind_of(doc.doctype):
		record_rows_changed_before(doc.doctype, old, _stored(doc.doctype, old))


def after_rename(
	doc, method=None, old: str | None = None, new: str | None = None, merge: bool = False
) -> None:
	"""Emits ``<doctype>.renamed`` under the new name, with the old one in the payload."""
	if current_policy().kind_of(doc.doctype):
		emit_document_event(doc, "renamed", extra={"oldName": old, "newName": new, "merge": bool(merge)})


def emit_document_event(
	doc,
	action: str,
	via: str | None = None,
	extra: dict[str, Any] | None = None,
	before: Any = None,
	unchanged: bool | None = None,
) -> dict[str, Any] | None:
	"""Records the event for one action on ``doc`` (plus ``business.transaction`` when due).

	``before`` is what an update compares with when the version Frappe loaded before saving
	is not the right one. An update that changed nothing is recorded when ``unchanged`` says
	so (by default: a db_set always, a save as Fabric Settings say). Returns the payload
	recorded, None when nothing was.
	"""
	policy = current_policy()
	payload: dict[str, Any] = {"doc": document_payload(doc)}
	if action in ("updated", "updated_after_submit"):
		if before is None and via:
			before = doc.flags.get("fabric_snapshot")
		changes = document_changes(before or doc.get_doc_before_save(), payload["doc"])
		if unchanged is None:
			unchanged = policy.unchanged_saves or via is not None
		if changes == {} and not unchanged:
			return None
		payload["changes"] = changes
	if via:
		payload["via"] = via
	payload.update(extra or {})
	doc.flags.fabric_snapshot = payload["doc"]
	envelopes = [_lifecycle_envelope(doc, action, payload, policy.kind_of(doc.doctype))]
	if action in BUSINESS_ACTIONS and policy.business_events and doc.meta.is_submittable:
		envelopes.append(_business_envelope(doc, action, payload["doc"]))
	record(envelopes)
	return payload


def _lifecycle_envelope(doc, action: str, payload: dict[str, Any], kind: str | None):
	if kind == "system":
		system_payload = {"doctype": doc.doctype, "name": doc.name, "action": action, **payload}
		return new_envelope(SYSTEM_CHANGE, doc.doctype, doc.name, action, system_payload)
	return new_envelope(document_event_type(doc.doctype, action), doc.doctype, doc.name, action, payload)


def _business_envelope(doc, action: str, doc_payload: dict[str, Any]):
	summary = {
		field: doc_payload.get(field) for field in BUSINESS_FIELDS if doc_payload.get(field) is not None
	}
	for field in BUSINESS_DAYS:
		# Some DocTypes (ERPNext's Asset Movement) keep these as Datetime: the summary gives the day.
		if isinstance(summary.get(field), str):
			summary[field] = summary[field][:10]
	payload = {
		"doctype": doc.doctype,
		"name": str(doc.name),  # autoincrement names are integers
		"docstatus": doc.docstatus,
		**summary,
		"doc": doc_payload,
	}
	return new_envelope(BUSINESS_TRANSACTION, doc.doctype, doc.name, action, payload)
