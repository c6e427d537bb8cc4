"""What a transaction holds back for its commit: deferred db_sets, rows changed alone, the
DocTypes whose schemas to refresh, the registry changes to announce.

Held per transaction in frappe.local and handled by a before_commit (or after_commit)
callback; gone with a rollback whichever way it comes. A rollback to a savepoint undoes only
the writes since that savepoint, and Frappe runs no callback for it: ``frappe.db``'s savepoint
methods are watched (``watch_savepoints``) so that what was held since goes with them, and what
was to be forgotten at the end of the transaction (``when_transaction_ends``) is forgotten then.
"""

from __future__ import annotations

import weakref

import frappe
from frappe.database.database import Database

# The savepoints of the open transaction, oldest first, each with what was held when it was set.
SAVEPOINTS = "fabric_savepoints"
# Every attribute hold_until_commit has served in this process: what a savepoint notes.
_held_attributes: set[str] = set()


class HeldUntilCommit:
	"""What one transaction holds back, and the commit callback that records it.

	Only Frappe's callback list holds this object; frappe.local keeps a weak reference. A
	rollback drops the list, and so does the rollback of a commit that a before_commit
	callback refused, after Frappe had already dropped the after-rollback callbacks (no
	callback could have emptied what was held then): either way the object goes with its
	transaction, and the next one starts empty with a callback of its own.
	"""

	__slots__ = ("__weakref__", "flush", "items", "started")

	def __init__(self, flush):
		self.items: dict = {}
		self.flush = flush
		self.started = False

	def __call__(self) -> None:
		self.started = True  # what is held from now on waits for a callback of its own
		self.flush()


def hold_until_commit(attribute: str, flush, after_commit: bool = False) -> dict:
	"""Returns a dict held in frappe.local for the open transaction, to add to.

	On first use in a transaction ``flush`` is set to run before the commit (after it, with
	``after_commit``); a rollback forgets the dict.
	"""
	holder = _holder(attribute)
	if holder is None or holder.started:
		_held_attributes.add(attribute)
		holder = HeldUntilCommit(flush)
		(frappe.db.after_commit if after_commit else frappe.db.before_commit).add(holder)
		setattr(frappe.local, attribute, weakref.ref(holder))
	return holder.items


def held_now(attribute: str) -> dict:
	"""Returns what the open transaction holds under ``attribute`` (empty when nothing)."""
	holder = _holder(attribute)
	return holder.items if holder is not None and not holder.started else {}


def _holder(attribute: str) -> HeldUntilCommit | None:
	reference = getattr(frappe.local, attribute, None)
	return reference() if reference is not None else None


def release(attribute: str) -> dict:
	"""Returns what ``hold_until_commit`` kept, emptying it first (its flush is running:
	nothing must stay behind if recording raises)."""
	holder = _holder(attribute)
	if holder is None:
		return {}
	released = dict(holder.items)
	holder.items.clear()
	return released


def when_transaction_ends(end) -> None:
	"""Runs ``end`` once the open transaction commits or rolls back, however it rolls back.

	On a rollback ``end`` runs while Frappe empties its after-commit list, before the SQL
	rollback: it must not add callbacks of its own, nor depend on the rollback having happened.
	It also runs (once, then) at a rollback to a savepoint set before it was added: what it
	forgets was built from writes that rollback undid.
	"""
	transaction_end = TransactionEnd(end)
	frappe.db.after_commit.add(transaction_end)
	savepoints = getattr(frappe.local, SAVEPOINTS, None)
	if savepoints:
		savepoints[-1][2].append(transaction_end.end)


class TransactionEnd:
	"""An after-commit callback that runs ``end`` once: when called, or when Frappe drops it.

	Frappe runs no callback at all for the rollback of a commit that a before_commit callback
	refused: it dropped the after-rollback ones before running those, and the rollback drops
	the after-commit ones. Only that list holds this object, so it is finalised as it is
	dropped, by any rollback.
	"""

	__slots__ = ("__weakref__", "end")

	def __init__(self, end):
		self.end = weakref.finalize(self, end)
		self.end.atexit = False

	def __call__(self) -> None:
		self.end()


def note_savepoint(name: str) -> None:
	"""Notes what is held as the savepoint ``name`` is set (a savepoint of the same name is replaced)."""
	savepoints = getattr(frappe.local, SAVEPOINTS, None)
	if savepoints is None:
		savepoints = []
		setattr(frappe.local, SAVEPOINTS, savepoints)
		when_transaction_ends(lambda: _forget_savepoints(savepoints))
	for index in range(len(savepoints) - 1, -1, -1):
		if savepoints[index][0] == name:
			_drop_savepoints(savepoints, index, index + 1)
	held = {}
	for attribute in _held_attributes:
		holder = _holder(attribute)
		if holder is not None and not holder.started:
			held[attribute] = (weakref.ref(holder), _copy_items(holder.items))
	savepoints.append([name, held, []])  # name, what was held, transaction ends added since


def roll_back_held(name: str) -> None:
	"""Brings what is held back to what it was when the savepoint ``name`` was set.

	What was held since then (rows changed alone, db_sets deferred to the commit, wake-ups)
	belongs to writes the database just undid, and the transaction ends added since (dropping
	the policy or routing index built from uncommitted settings or subscriptions) run now. A
	savepoint set before this process watched savepoints, or by raw SQL, is unknown: the
	commit's own checks against the database are then all there is.
	"""
	savepoints = getattr(frappe.local, SAVEPOINTS, None) or []
	index = next((i for i in range(len(savepoints) - 1, -1, -1) if savepoints[i][0] == name), None)
	if index is None:
		return
	held = savepoints[index][1]
	for attribute in _held_attributes:
		holder = _holder(attribute)
		if holder is None or holder.started:
			continue
		reference, items = held.get(attribute, (None, {}))
		holder.items.clear()
		if reference is not None and reference() is holder:
			holder.items.update(_copy_items(items))  # it may be rolled back to again
	ends = [end for entry in savepoints[index:] for end in entry[2]]
	savepoints[index][2].clear()
	del savepoints[index + 1 :]  # the database forgets the savepoints set after this one
	for end in ends:
		end()  # a weakref.finalize: runs once, so not again when the transaction ends


def forget_savepoint(name: str) -> None:
	"""Forgets the savepoint ``name`` and those set after it, as releasing it does."""
	savepoints = getattr(frappe.local, SAVEPOINTS, None) or []
	for index in range(len(savepoints) - 1, -1, -1):
		if savepoints[index][0] == name:
			_drop_savepoints(savepoints, index, len(savepoints))
			return


def _drop_savepoints(savepoints: list, start: int, stop: int) -> None:
	"""Drops the savepoints ``start`` to ``stop``: the transaction ends added since them now
	belong to the savepoint before (a rollback to that one still undoes their writes)."""
	if start:
		for entry in savepoints[start:stop]:
			savepoints[start - 1][2].extend(entry[2])
	del savepoints[start:stop]


def _forget_savepoints(savepoints: list) -> None:
	savepoints.clear()
	if getattr(frappe.local, SAVEPOINTS, None) is savepoints:
		delattr(frappe.local, SAVEPOINTS)


def _copy_items(items: dict) -> dict:
	"""Copies what is held deep enough that later changes leave the copy alone: a held change is
	a dict whose values (the rows before it) are changed in place; documents are kept as such."""
	return {
		key: {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()}
		if isinstance(value, dict)
		else value
		for key, value in items.items()
	}


def watch_savepoints() -> None:
	"""Makes ``frappe.db.savepoint``, ``rollback(save_point=...)`` and ``release_savepoint``
	keep what is held in step with the database (once per process)."""
	if getattr(Database.savepoint, "fabric_watched", False):
		return
	set_savepoint, rollback, release = Database.savepoint, Database.rollback, Database.release_savepoint

	# Arguments pass through as given, so that a Frappe release adding one keeps working.
	def savepoint(self, save_point, *args, **kwargs):
		set_savepoint(self, save_point, *args, **kwargs)
		note_savepoint(save_point)

	def rollback_watched(self, *args, **kwargs):
		rollback(self, *args, **kwargs)
		if kwargs.get("save_point"):
			roll_back_held(kwargs["save_point"])

	def release_savepoint(self, save_point, *args, **kwargs):
		release(self, save_point, *args, **kwargs)
		forget_savepoint(save_point)

	for method, original in (
		(savepoint, set_savepoint),
		(rollback_watched, rollback),
		(release_savepoint, release),
	):
		method.__doc__, method.__name__ = original.__doc__, original.__name__
		method.fabric_watched = True
	Database.savepoint, Database.rollback = savepoint, rollback_watched
	Database.release_savepoint = release_savepoint


watch_savepoints()
