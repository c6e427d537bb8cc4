"""Document lifecycle events from ``doc_events``: one handler per hook, no per-DocType code.

Frappe ends every save path (insert, save, submit, cancel, update after submit) with
``on_change``, and ``db_set`` fires ``before_change`` then ``on_change``. So ``before_change``
marks a db_set, and ``on_change`` emits either that update or the save's actions. A db_set
made while its document is being saved (from the document's own hooks) is held back: the
save's one event carries the value, and only a db_set whose save never completed (it raised
and was caught) is recorded at commit. Deletion and renaming have hooks of their own. Data
import and patches save through the same paths, so their changes are emitted too (Frappe's
own webhooks skip them). A row's hooks hand it to ``rows.py``; the event itself is built by
``document_events.py``.
"""

from __future__ import annotations

from datetime import datetime

import frappe
from frappe.utils import get_datetime

from cauldron_fabric.emit.changes import document_payload
from cauldron_fabric.emit.document_events import (
	BUSINESS_ACTIONS,
	business_envelope,
	emit_document_event,
	stored_document,
)
from cauldron_fabric.emit.frames import argument_of
from cauldron_fabric.emit.held import held_now, hold_until_commit, release
from cauldron_fabric.emit.inserts import being_saved, inserted_through_another_object, save_running, saved_now
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.recorder import record
from cauldron_fabric.emit.rows import record_rows_changed_before, record_rows_changed_in_save, row_changed
from cauldron_fabric.emit.set_values import (
	being_renamed_to,
	hold_under_new_name,
	is_bookkeeping_db_set,
	record_set_values_in_save,
	tell_again_after_the_save,
)

SAVE_ACTIONS = {
	"save": "updated",
	"submit": "submitted",
	"cancel": "cancelled",
	"update_after_submit": "updated_after_submit",
}
# db_sets (and saves of copies) inside saves, held until that save emits or until commit.
DEFERRED_DB_SETS = "fabric_deferred_db_sets"
RELOADED = "fabric_reloaded_documents"  # as stored before an import deleted them to store anew
# The mark of a db_set of Frappe's bookkeeping alone, which records nothing (set_values.py).
BOOKKEEPING = "bookkeeping"


def mark_db_set(doc, method=None) -> None:
	"""Marks the next on_change as coming from db_set (before_change fires only there)."""
	# db_set returns before on_change on a document without a name: a mark would turn the
	# later insert into a db_set update.
	if doc.name is not None:
		doc.flags.fabric_db_set = True
		if is_bookkeeping_db_set(doc):
			doc.flags.fabric_db_set = BOOKKEEPING
		elif (
			not saved_now(doc)
			and not doc.flags.in_delete
			and not _is_row(doc)
			and current_policy().kind_of(doc.doctype)
		):
			# The object may be older than the row (loaded before another save, or reloaded
			# since its last event): the row as stored before this write is the "old" side.
			doc.flags.fabric_db_set_before = stored_document(doc.doctype, doc.name)
			record_rows_changed_before(doc.doctype, doc.name, doc.flags.fabric_db_set_before)


def on_change(doc, method=None) -> None:
	"""Emits the event(s) of the save or db_set that just wrote ``doc``."""
	via_db_set = doc.flags.pop("fabric_db_set", False)
	stored_before = doc.flags.pop("fabric_db_set_before", None)
	if doc.flags.in_delete or via_db_set == BOOKKEEPING:
		return
	if _is_row(doc):
		row_changed(doc, via="db_set" if via_db_set else None)
		return
	if not current_policy().kind_of(doc.doctype):
		if not via_db_set:
			_record_business_transaction_alone(doc)
		return
	if via_db_set:
		if saved_now(doc):
			_defer_db_set(doc)
		elif being_renamed_to(doc.doctype, doc.name):
			# From an after_rename hook: the renamed event, still to come, tells the name first.
			hold_under_new_name(doc.doctype, doc.name, stored_before, "db_set")
		else:
			# db_set wrote some columns; the rest of the object may be stale: the event carries
			# the row as stored.
			emit_document_event(
				stored_document(doc.doctype, doc.name) or doc, "updated", via="db_set", before=stored_before
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
		reloaded = reloaded_by_import(doc)
		if reloaded and not recorded:
			recorded = (getattr(frappe.local, RELOADED, None) or {}).pop((doc.doctype, doc.name), None)
		actions = ["updated" if recorded or reloaded else "created"]
		if doc.docstatus == 1:
			actions.append("submitted")
	else:
		actions = [SAVE_ACTIONS.get(getattr(doc, "_action", None) or "save", "updated")]
		if actions == ["updated"] and being_renamed_to(doc.doctype, doc.name):
			# Saved under the new name from an after_rename hook: the renamed event, still to
			# come, tells the name first, and this save's update follows it (as a db_set's).
			hold_under_new_name(doc.doctype, doc.name, doc.get_doc_before_save(), None)
			return
		# Rows changed alone before this save: their update comes first, up to the version the
		# save started from (which this save's event compares with).
		record_rows_changed_before(doc.doctype, doc.name, doc.get_doc_before_save())
	reported = None
	for action in actions:
		reported = emit_document_event(doc, action, before=recorded) or reported
	if actions:
		record_rows_changed_in_save(doc, reported["doc"] if reported else None)
		# What its hooks wrote with frappe.db.set_value: the object does not hold it.
		record_set_values_in_save(doc, reported["doc"] if reported else None)


def _record_business_transaction_alone(doc) -> None:
	"""Records ``business.transaction`` for a submit or cancel whose lifecycle events are off
	(Fabric Settings may keep business events alone)."""
	if not doc.flags.in_insert and doc.get("__islocal") is False:
		return  # submitted by its own after_insert: the end of the insert records it
	action = SAVE_ACTIONS.get(getattr(doc, "_action", None) or "save")
	if action in BUSINESS_ACTIONS and doc.meta.is_submittable:
		if current_policy().emits_business_transactions(doc.doctype):
			record([business_envelope(doc, action, document_payload(doc))])


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


def reloaded_by_import(doc) -> bool:
	"""Tells whether this insert stores anew a document Frappe's import found stored already.

	``import_doc`` (bench migrate, an app's changed JSON) deletes the stored document for reload,
	with no hooks, then inserts the new one: an update of what was there, not a creation. Its
	``delete_old_doc`` is the one place that sets the ``ignore_children_type`` flag.
	"""
	return bool(frappe.flags.in_import) and doc.flags.get("ignore_children_type") is not None


def note_reloaded(doc, method=None) -> None:
	"""Keeps a DocType as stored when Frappe's import deletes it to store it anew (its
	``before_reload``): the insert that follows is its update, and compares with this.

	Kept in frappe.local, not for the transaction: the insert's own DDL commits before its
	on_change runs. Frappe runs that method for DocTypes only: another document an import
	stores anew (a Report, a Workspace) is deleted with no hook, so its update tells no changes.
	"""
	if current_policy().kind_of(doc.doctype):
		if getattr(frappe.local, RELOADED, None) is None:
			setattr(frappe.local, RELOADED, {})
		getattr(frappe.local, RELOADED)[doc.doctype, doc.name] = document_payload(doc)


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
		stored = stored_document(doc.doctype, doc.name)
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
		if payload is not None and being_saved(doc):
			# Maybe a commit inside the save's own hooks: if the save goes on to emit, its event
			# compares with what this one said instead of repeating it.
			doc.flags.fabric_snapshot = doc.flags.fabric_recorded_mid_save = payload["doc"]
			if save_running(doc.doctype, doc.name):
				# ``doc`` may be a copy the hooks wrote through: the saved object, whose event
				# comes next, does not hold what it wrote (nothing is told when it does).
				tell_again_after_the_save(doc.doctype, doc.name, stored, payload.get("via"))


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
	was. Deletions inside patches, installs and uninstalls add no feed entry: the snapshots of
	``deleted_doctypes.py`` record those.
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
	emit_document_event(deleted_doctype(name), "deleted")


def deleted_doctype(name: str, since: datetime | None = None, row: dict | None = None):
	"""Returns the deleted DocType ``name`` as its deletion kept it in Deleted Document (the
	newest one, written at ``since`` or later), else as ``row`` (or its name alone) says."""
	filters = {"deleted_doctype": "DocType", "deleted_name": name}
	if since is not None:
		filters["creation"] = (">=", since)
	kept = frappe.db.get_value("Deleted Document", filters, "data", order_by="creation desc")
	values = frappe.parse_json(kept) if kept else dict(row or {"name": name})
	values["doctype"] = "DocType"
	return frappe.get_doc(values)


def before_rename(
	doc, method=None, old: str | None = None, new: str | None = None, merge: bool = False
) -> None:
	"""Records the update of rows changed alone before the rename, under the name they changed under.

	The held change is keyed by the old name: at commit no parent has it any more, and the
	rows' update would vanish. The stored document is the version that update ends at.
	"""
	if old is not None and current_policy().kind_of(doc.doctype):
		record_rows_changed_before(doc.doctype, old, stored_document(doc.doctype, old))


def after_rename(
	doc, method=None, old: str | None = None, new: str | None = None, merge: bool = False
) -> None:
	"""Emits ``<doctype>.renamed`` under the new name, with the old one in the payload, then what
	after_rename hooks before this one wrote under the new name with set_value or db_update."""
	if current_policy().kind_of(doc.doctype):
		extra = {"oldName": old, "newName": new, "merge": bool(merge)}
		reported = emit_document_event(doc, "renamed", extra=extra)
		record_set_values_in_save(doc, reported["doc"] if reported else None)
