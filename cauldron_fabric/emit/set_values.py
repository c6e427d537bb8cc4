"""Writes that run no document hook as ``updated`` events: ``frappe.db.set_value``,
``frappe.db.set_single_value`` (``via: set_value``) and a document's ``db_update()``
(``via: db_update``).

ERPNext and custom apps move statuses, quantities and flags that way, and nothing else in
the fabric sees them. The app wraps the three methods once per process (``watch.py`` says
from where): each wrapper reads what it is about to change (for a set_value, only the values
it replaces, in one query), calls Frappe's own method with the arguments as given, and reads
the documents written.

* A write outside the document's own save is its ``updated`` event at once, from the document
  as stored before to the document as stored after; a write that changed nothing records
  nothing (unless Fabric Settings emit unchanged saves).
* A write made while the document is being saved (from its own hooks), or renamed to the name
  it writes (from after_rename), is held: right after the save's (or renamed) event an update
  follows, from what that event reported to the document as stored
  (the save's event is built from the saved object, which a set_value or a copy's db_update
  leaves alone). A save that never reaches its event (it raised and was caught) leaves the
  update to the commit.
* A write to a child table row is its parent's update, like a row db_set alone (``rows.py``).
* A set_value by filters is one event per document it matched (their names are read first,
  with the same filters).
* ``Document.db_set`` writes through ``set_value`` and Frappe's save through ``db_update``:
  both have events of their own, so calls from them are left alone.
* An event its schema refuses is kept as Invalid, never failing the write: Frappe checks
  nothing on such a write, and a schema registered before the upgrade that started recording
  these allows no such ``via``.

Fabric Settings choose which writes count: by default every db_update and the set_values that
update ``modified`` (Frappe's own sign that the document changed; ``update_modified=False`` is
how Frappe marks bookkeeping such as a user's ``last_active`` or the ``_assign`` and ``_seen``
columns, and the few counters it keeps without it are listed in ``FRAPPE_BOOKKEEPING``), or
every write, or none.
"""

from __future__ import annotations

import copy
from typing import Any

import frappe
from frappe.model.rename_doc import rename_doc

from cauldron_fabric.emit.document_events import (
	READ_TOGETHER,
	emit_document_event,
	no_messages,
	stored_document,
	stored_documents,
)
from cauldron_fabric.emit.frames import argument_of, call_of
from cauldron_fabric.emit.held import (
	held_now,
	hold_from_the_next_transaction,
	hold_until_commit,
	release,
)
from cauldron_fabric.emit.inserts import save_running, saved_now
from cauldron_fabric.emit.policy import (
	DB_UPDATE,
	SET_VALUE,
	SET_VALUES_ALL,
	SET_VALUES_NONE,
	SET_VALUES_THAT_UPDATE_MODIFIED,
	current_policy,
)
from cauldron_fabric.emit.recorder import recorded_together
from cauldron_fabric.emit.rows import (
	record_rows_changed_before,
	row_about_to_change,
	rows_about_to_change,
	rows_changed_alone,
)
from cauldron_fabric.emit.watch import watch_set_values, watch_writes  # noqa: F401 (see the end)

# Documents written without hooks while being saved: (doctype, name) -> {"before": the
# document as stored before the first such write, "via": how it was written}.
HELD = "fabric_set_values_in_save"
# Frappe's own save writes through db_update: the document and its rows, under these functions.
SAVE_PATHS = frozenset({"_save", "update_child_table"})
# Counters and marks Frappe keeps with set_values (or db_sets) that update modified all the
# same: by default bookkeeping like set_values with update_modified=False, no event for a write
# of these alone (only 'Every write' counts them). A db_set is an event otherwise, whatever it
# writes: only Frappe's own db_sets on every run of a scheduled job are listed.
FRAPPE_BOOKKEEPING = {
	# Counted up by every insert the rule names: a system.change per document otherwise.
	"Document Naming Rule": frozenset({"counter"}),
	"Email Account": frozenset(
		{
			# Where the next pull of the mailbox starts: set_value by
			# EmailServer.check_imap_uidvalidity on every pull (email_account.pull, every ten
			# minutes).
			"uidnext",
			# Pulls in a row that could not reach the mailbox: db_set by
			# EmailAccount.check_email_server_connection on every such pull (turning incoming
			# mail off after too many is a db_set of enable_incoming, an event).
			"no_failed",
		}
	),
	# The day the daily job repeats the document next, moved by every repeat (the new document
	# is an event of its own).
	"Auto Repeat": frozenset({"next_schedule_date"}),
	# Where the daily sync of the account's contacts starts next, and when it last ran.
	"Google Contacts": frozenset({"next_sync_token", "last_sync_on"}),
	# When the daily or weekly backup to Google Drive last finished.
	"Google Drive": frozenset({"last_backup_on"}),
	# The hash of the DocType's JSON file, stored by every migrate that imports it (in SQL).
	"DocType": frozenset({"migration_hash"}),
	# Whom a round-robin rule picked last: db_set by AssignmentRule.do_assignment on every
	# assignment it makes (the assignment, a ToDo, is an event of its own).
	"Assignment Rule": frozenset({"last_user"}),
}


class PlannedWrite:
	"""The documents one write is about to change, read before it runs."""

	def __init__(self, doctype: str, via: str) -> None:
		self.doctype = doctype
		self.via = via
		# Each document as stored before (or, for a set_value, the values it replaces), recorded
		# once the write is done.
		self.now: list[Any] = []

	def record(self) -> None:
		"""Records the update of every document written outside its own save: one write's
		documents are read, and their events written, many at a time (a statement may have
		written thousands)."""
		unchanged = current_policy().unchanged_saves
		for start in range(0, len(self.now), READ_TOGETHER):
			befores = self.now[start : start + READ_TOGETHER]
			afters = stored_documents(self.doctype, [before.name for before in befores])
			with recorded_together():
				for before in befores:
					after = afters.get(str(before.name))
					_record_update(self.doctype, before.name, before, self.via, unchanged, after)


# _record_update's ``after`` when the caller has not read the document.
NOT_READ = object()


def _record_update(doctype: str, name, before, via: str | None, unchanged: bool = False, after=NOT_READ):
	"""Records the update of a document written without hooks, from ``before`` (a document, an
	event's payload or the values a write replaced) to the document as stored now (``after``,
	when the caller has read it), which it returns (None: gone since). Never refused for its
	schema (see the module's docstring)."""
	if after is NOT_READ:
		after = stored_document(doctype, name)
	if after is not None:
		if isinstance(before, ValuesBefore):
			before = before.applied_to(after)
		emit_document_event(
			after, "updated", via=via, before=before, unchanged=unchanged, reject_invalid=False
		)
	return after


def plan(db, doctype: str, names, fields, update_modified: bool, caller) -> PlannedWrite | None:
	"""Reads what a set_value of ``fields`` (a fieldname, or a dict) to ``names`` (a name, or
	filters) in ``doctype`` is about to change.

	Returns None when the fabric leaves the write alone: another connection's, one from
	``db_set``, one Fabric Settings do not count, or one to a DocType that emits nothing.
	"""
	if db is not getattr(frappe.local, "db", None) or caller.f_code.co_name == "db_set":
		return None
	policy = current_policy()
	if not policy.enabled or policy.set_values == SET_VALUES_NONE:
		return None
	written = set(fields) if isinstance(fields, dict) else {fields}
	if policy.set_values == SET_VALUES_THAT_UPDATE_MODIFIED and is_bookkeeping(
		doctype, written, update_modified
	):
		return None
	return plan_documents(doctype, _names, names, PlannedWrite(doctype, SET_VALUE), written)


def is_bookkeeping(doctype: str, written: set, update_modified: bool) -> bool:
	"""Tells whether a set_value of the columns ``written`` is Frappe's bookkeeping: it keeps
	``modified``, or writes only a counter or mark Frappe keeps without doing so
	(``FRAPPE_BOOKKEEPING``)."""
	if not update_modified:
		return True
	return bool(written) and written <= FRAPPE_BOOKKEEPING.get(doctype, frozenset())


def is_bookkeeping_db_set(doc) -> bool:
	"""Tells whether the ``doc.db_set(...)`` running now writes only Frappe's bookkeeping
	(``FRAPPE_BOOKKEEPING``) and Fabric Settings count no such write (all but 'Every write')."""
	kept = FRAPPE_BOOKKEEPING.get(doc.doctype)
	if kept is None or current_policy().set_values == SET_VALUES_ALL:
		return False
	fields = argument_of("db_set", doc, "fieldname")
	return (set(fields) if isinstance(fields, dict) else {fields}) <= kept


def plan_db_update(doc, caller) -> PlannedWrite | None:
	"""Reads what ``doc.db_update()`` called outside Frappe's save is about to change.

	Frappe's own save writes the document and its rows this way: its events tell it all. A
	db_update from a hook of that save follows the save's event like a set_value (nothing, when
	it wrote the saved object itself, whose values that event carries already). Any other
	db_update counts unless Fabric Settings turn these writes off: code calls it to write a
	document it changed, never for bookkeeping (which Frappe writes with set_value and
	``update_modified=False``).
	"""
	if caller.f_code.co_name in SAVE_PATHS or doc.get("__islocal") or not doc.name:
		return None
	policy = current_policy()
	if not policy.enabled or policy.set_values == SET_VALUES_NONE:
		return None
	write = PlannedWrite(doc.doctype, DB_UPDATE)
	return plan_documents(doc.doctype, lambda _doctype, name: [name], doc.name, write)


def plan_documents(
	doctype: str, names_of, names, write: PlannedWrite, columns: set | None = None, befores=None
) -> PlannedWrite | None:
	"""Plans a write of ``columns`` (None: the whole row) to the documents ``names`` picks;
	``befores``, when given, are those documents (ValuesBefore) as read already."""
	try:
		with no_messages():
			meta = frappe.get_meta(doctype)
	except frappe.DoesNotExistError:
		return None  # Frappe's own write fails as it always did, with no message of ours
	if not meta.issingle and not frappe.db.get_db_table_columns(f"tab{doctype}"):
		# No table yet (a patch writing before the sync that creates it): Frappe's own write raises
		# the database's error, which its caller may catch with frappe.db.is_table_missing.
		return None
	if meta.istable:
		rows = list(names_of(doctype, names))
		if len(rows) > 1:  # many rows (a raw statement over a table): their tables put aside together
			rows_about_to_change(doctype, rows, write.via)
		else:
			for name in rows:
				row_about_to_change(stored_document(doctype, name), write.via)
		return None
	if current_policy().kind_of(doctype) is None:
		return None
	if befores is None:
		befores = _stored_before(meta, names_of, names, columns)
	for before in befores:
		if saved_now(before) or being_renamed_to(doctype, before.name):
			held = hold_until_commit(HELD, record_held_set_values)
			whole = _whole(doctype, before)
			held.setdefault((doctype, str(before.name)), {"before": whole, "via": write.via})
		else:
			if rows_changed_alone(doctype, before.name):
				# Rows of this document changed alone before: their update comes first (as for db_set).
				record_rows_changed_before(doctype, before.name, _whole(doctype, before))
			write.now.append(before)
	return write if write.now else None


class ValuesBefore(frappe._dict):
	"""A document's name and the values a set_value replaces in it, as stored before."""

	def applied_to(self, after):
		"""Returns the document as stored before: ``after`` (the document as stored after the
		write, which changed these values and nothing else) with these values back."""
		before = copy.copy(after)
		for column, value in self.items():
			if column not in ("doctype", "name"):
				before.set(column, value)
		before._fix_numeric_types()  # as a document read whole is
		return before


def _stored_before(meta, names_of, names, columns: set | None) -> list:
	"""Returns the documents ``names`` picks, each as stored now: for a db_update (``columns``
	None) the document's own row; whole for a Single, or for a set_value of a column the table
	does not have (for Frappe to refuse); else only ``columns``, in one read for all."""
	doctype = meta.name
	if meta.issingle or (columns is not None and not columns <= set(frappe.db.get_table_columns(doctype))):
		stored = (stored_document(doctype, name) for name in names_of(doctype, names))
		return [doc for doc in stored if doc is not None]
	fields = ["*"] if columns is None else ["name", *sorted(columns - {"name"})]
	if isinstance(names, str | int):
		# One document, the common case (a db_update always): a plain query of the table's own
		# columns (checked above; a db_update writes the document's own row only, so that row is
		# all the "before" it needs), which costs a third of Frappe's query builder with its
		# field checks.
		selected = ", ".join(field if field == "*" else f"`{field}`" for field in fields)
		rows = frappe.db.sql(
			f"SELECT {selected} FROM `tab{doctype}` WHERE `name` = %s", (names,), as_dict=True
		)
	else:
		rows = frappe.db.get_values(doctype, names, fields, as_dict=True)
	return [ValuesBefore(row, doctype=doctype) for row in rows or ()]


def being_renamed_to(doctype: str, name) -> bool:
	"""Tells whether ``frappe.rename_doc`` is renaming a document of ``doctype`` to ``name`` now.

	Its after_rename hooks (the controller's and other apps' first) run before the fabric's,
	which records the renamed event that tells consumers the new name: a write under that name
	from them (ERPNext's Item writes its item_code so) follows it, like one from a save's hooks.
	"""
	frame = call_of(rename_doc)
	return (
		frame is not None
		and frame.f_locals.get("doctype") == doctype
		and str(frame.f_locals.get("new")) == str(name)
	)


def _whole(doctype: str, before):
	"""Returns ``before`` as a whole document, read now when it holds some values only."""
	return stored_document(doctype, before.name) if isinstance(before, ValuesBefore) else before


def _names(doctype: str, names) -> list:
	"""Returns the names a set_value's ``dn`` picks: itself, or those its filters match now."""
	if isinstance(names, str | int):
		return [names]
	return frappe.db.get_values(doctype, names, "name", pluck=True, order_by=None)


def record_set_values_in_save(doc, reported: dict[str, Any] | None) -> None:
	"""Records, right after a save's event, what set_value (or a db_update of another copy)
	wrote to the document during that save.

	``reported`` is the document as that event carried it (None when the save recorded no
	event: then the saved object as it stands).
	"""
	held = held_now(HELD).pop((doc.doctype, str(doc.name)), None)
	if held is not None:
		before = reported if reported is not None else doc
		if held.get("since_before"):
			before = held["before"]
		_record_update(doc.doctype, doc.name, before, held["via"])


def hold_under_new_name(doctype: str, name, before, via: str | None) -> None:
	"""Holds a db_set (``via``) or a save (``via`` None) under the new name from an after_rename
	hook (ERPNext's Customer db_sets its customer_name so) for an update right after the
	renamed event, like a set_value.

	Both changed the object the renamed event is built from, so that event carries the values
	already: the update runs from ``before`` (the document as stored before the write, or before
	a set_value held earlier) to the document as stored, telling what was written.
	"""
	held = hold_until_commit(HELD, record_held_set_values)
	held.setdefault((doctype, str(name)), {"before": before, "via": via})["since_before"] = True


def record_held_set_values() -> None:
	"""Records the writes of saves that never reached their event (before_commit).

	A save still running committed from its own hooks: its event, still to come, carries the
	saved object, which does not hold what was written, so the write is held again for an
	update right after that event (tell_again_after_the_save).
	"""
	for (doctype, name), held in release(HELD).items():
		if not current_policy().kind_of(doctype):
			continue
		after = _record_update(doctype, name, held["before"], held["via"])
		if after is not None and save_running(doctype, name):
			tell_again_after_the_save(doctype, name, after, held["via"])


def tell_again_after_the_save(doctype: str, name, before, via: str | None) -> None:
	"""Holds, from the end of this commit, an update of the document for right after the event
	of its save still running (record_set_values_in_save), ``before`` being the document as this
	commit recorded it.

	A commit from a save's own hooks records what they wrote before that event, which then
	carries the saved object, without what was written around it: told again after it, the
	document's last event is not older than its row.
	"""
	held = {"before": before, "via": via}
	hold_from_the_next_transaction(HELD, record_held_set_values, (doctype, str(name)), held)


# Hooks cached in Redis before an upgrade moved the wraps to watch.py name this module's
# watch_set_values (imported above). Imported at a process's first document event: every wrap
# from there on.
watch_writes()
