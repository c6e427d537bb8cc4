"""What a transaction holds back for its commit: deferred db_sets, rows changed alone, the
DocTypes whose schemas to refresh, the registry changes to announce.

Held per transaction in frappe.local and handled by a before_commit (or after_commit)
callback; gone with a rollback whichever way it comes. A rollback to a savepoint undoes only
the writes since that savepoint, and Frappe runs no callback for it: ``frappe.db``'s savepoint
methods are watched (``watch_savepoints``) so that what was held since goes with them, and what
was to be forgotten at the end of the transaction (``when_transaction_ends``) is forgotten then.

Documents inserted in SQL before their rows (Frappe's bulk_insert of documents, then of their
rows) wait for those rows: they are recorded at the first other write or event, or at the
commit (``wait_for_rows``).
"""

from __future__ import annotations

import weakref
from functools import partial

import frappe
from frappe.database.database import Database

# The savepoints of the open transaction, oldest first, each with what was held when it was set.
SAVEPOINTS = "fabric_savepoints"
# Events that wait for the rows of their documents, and what records them (wait_for_rows).
WAITING = "fabric_waiting_for_rows"
_MISSING = object()


class HeldItems(dict):
	"""What one transaction holds under one attribute: a dict that, while savepoints are set,
	keeps the value a key had when the newest one was set, before the key is first touched.

	A savepoint copies nothing: a long job holding thousands of items and setting a savepoint
	for each of thousands of rows pays for the keys it touches, not for all it holds each time.
	Reads journal too: a held change is a dict changed in place after ``get``.
	"""

	__slots__ = ("holder",)

	def _touch(self, key) -> None:
		savepoints = getattr(frappe.local, SAVEPOINTS, None)
		if savepoints:
			kept = savepoints[-1][1].setdefault(id(self), (self, {}))[1]
			if key not in kept:
				kept[key] = _copy_value(dict.get(self, key, _MISSING))

	def __getitem__(self, key):
		self._touch(key)
		return dict.__getitem__(self, key)

	def get(self, key, default=None):
		self._touch(key)
		return dict.get(self, key, default)

	def __setitem__(self, key, value) -> None:
		self._touch(key)
		dict.__setitem__(self, key, value)

	def __delitem__(self, key) -> None:
		self._touch(key)
		dict.__delitem__(self, key)

	def pop(self, key, *default):
		self._touch(key)
		return dict.pop(self, key, *default)

	def setdefault(self, key, default=None):
		self._touch(key)
		return dict.setdefault(self, key, default)

	def clear(self) -> None:
		for key in list(self):
			self._touch(key)
		dict.clear(self)

	def update(self, *args, **kwargs) -> None:
		for key, value in dict(*args, **kwargs).items():
			self[key] = value

	def popitem(self):
		raise TypeError("held items are taken by key")


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
		self.items = HeldItems()
		self.items.holder = weakref.ref(self)
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
		holder = HeldUntilCommit(flush)
		(frappe.db.after_commit if after_commit else frappe.db.before_commit).add(holder)
		setattr(frappe.local, attribute, weakref.ref(holder))
	return holder.items


def hold_from_the_next_transaction(attribute: str, flush, key, value) -> None:
	"""Holds ``value`` under ``key`` (unless something is held there already) for the transaction
	that starts when this commit ends, as hold_until_commit would hold it then.

	For what a before_commit callback finds must wait for an event still to come: a hold made
	while those callbacks run would be flushed by this very commit.
	"""
	frappe.db.after_commit.add(partial(_hold, attribute, flush, key, value))


def _hold(attribute: str, flush, key, value) -> None:
	hold_until_commit(attribute, flush).setdefault(key, value)


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
	if holder.started:  # its flush runs: no rollback to a savepoint brings back what it records
		dict.clear(holder.items)
	else:
		holder.items.clear()
	return released


def wait_for_rows(related, flush) -> None:
	"""Runs ``flush`` at the first write statement that is not ``related`` (a function of the
	statement's kind and text), or event recorded, after now (``end_waiting``). ``flush``
	records what was held until the commit (hold_until_commit): the commit records it if none
	comes first, and a rollback forgets it."""
	setattr(frappe.local, WAITING, (related, flush))


def end_waiting(kind: str | None = None, query: str | None = None) -> None:
	"""Runs what waits (wait_for_rows) unless this is a write statement (``kind``, ``query``)
	related to it: so it is recorded before, and as stored before, anything else written or
	recorded."""
	waiting = getattr(frappe.local, WAITING, None)
	if waiting is None or (kind is not None and waiting[0](kind, query)):
		return
	setattr(frappe.local, WAITING, None)
	waiting[1]()


def stop_waiting() -> None:
	"""Forgets what waits (its flush runs now: at the commit)."""
	setattr(frappe.local, WAITING, None)


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
	"""Notes the savepoint ``name`` (a savepoint of the same name is replaced); what is held
	is kept key by key as it is first touched after it (``HeldItems``)."""
	savepoints = getattr(frappe.local, SAVEPOINTS, None)
	if savepoints is None:
		savepoints = []
		setattr(frappe.local, SAVEPOINTS, savepoints)
		when_transaction_ends(lambda: _forget_savepoints(savepoints))
	index = _newest(savepoints, name)
	if index is not None:
		_drop_savepoints(savepoints, index, index + 1)
	# name, the held values touched since (by HeldItems), the transaction ends added since
	savepoints.append([str(name).lower(), {}, []])


def roll_back_held(name: str) -> None:
	"""Brings what is held back to what it was when the savepoint ``name`` was set.

	What was held since then (rows changed alone, db_sets deferred to the commit, wake-ups)
	belongs to writes the database just undid, and the transaction ends added since (dropping
	the policy or routing index built from uncommitted settings or subscriptions) run now. A
	savepoint set before this process watched savepoints is unknown: the commit's own checks
	against the database are then all there is. Raw SQL savepoints (``SAVEPOINT``, ``ROLLBACK TO``,
	``RELEASE SAVEPOINT`` through ``frappe.db.sql``) are followed as Frappe's methods are
	(watch.py).
	"""
	savepoints = getattr(frappe.local, SAVEPOINTS, None) or []
	index = _newest(savepoints, name)
	if index is None:
		return
	for entry in reversed(savepoints[index:]):  # the oldest value of each key is put back last
		for items, kept in entry[1].values():
			holder = items.holder()
			if holder is None or holder.started:
				continue  # its flush is running: what is held from now on has a callback of its own
			for key, value in kept.items():
				if value is _MISSING:
					dict.pop(items, key, None)
				else:
					dict.__setitem__(items, key, value)
	ends = [end for entry in savepoints[index:] for end in entry[2]]
	savepoints[index][1].clear()  # what is held is as it was then: nothing touched since
	savepoints[index][2].clear()
	del savepoints[index + 1 :]  # the database forgets the savepoints set after this one
	for end in ends:
		end()  # a weakref.finalize: runs once, so not again when the transaction ends


def follow_savepoint(step: str, name: str) -> None:
	"""Follows a savepoint statement that ran (core.sql_kinds.transaction_step): sets,
	rolls back to or releases the savepoint ``name``."""
	{"savepoint": note_savepoint, "rollback": roll_back_held, "release": forget_savepoint}[step](name)


def forget_savepoint(name: str) -> None:
	"""Forgets the savepoint ``name`` and those set after it, as releasing it does."""
	savepoints = getattr(frappe.local, SAVEPOINTS, None) or []
	index = _newest(savepoints, name)
	if index is not None:
		_drop_savepoints(savepoints, index, len(savepoints))


def _newest(savepoints: list, name: str) -> int | None:
	"""Returns the place of the savepoint ``name`` among ``savepoints`` (None: not noted).

	Noting a savepoint replaces one of the same name, so there is at most one. Names compare
	without case, as MariaDB compares them."""
	name = str(name).lower()
	return next((i for i in range(len(savepoints) - 1, -1, -1) if savepoints[i][0] == name), None)


def _drop_savepoints(savepoints: list, start: int, stop: int) -> None:
	"""Drops the savepoints ``start`` to ``stop``: what was held when they were set, and the
	transaction ends added since, now belong to the savepoint before (a rollback to that one
	still undoes their writes), unless it kept older values itself."""
	if start:
		before = savepoints[start - 1]
		for entry in savepoints[start:stop]:
			for key, (items, kept) in entry[1].items():
				older = before[1].setdefault(key, (items, {}))[1]
				for item, value in kept.items():
					older.setdefault(item, value)
			before[2].extend(entry[2])
	del savepoints[start:stop]


def _forget_savepoints(savepoints: list) -> None:
	savepoints.clear()
	if getattr(frappe.local, SAVEPOINTS, None) is savepoints:
		delattr(frappe.local, SAVEPOINTS)


def _copy_value(value):
	"""Copies a held value deep enough that later changes leave the copy alone: a held change is
	a dict whose values (the rows before it) are changed in place; documents are kept as such."""
	if isinstance(value, dict):
		return {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()}
	return value


# The code of Frappe's own commit() and rollback(), whose COMMIT and ROLLBACK statements are
# theirs (watch.py routes one run in raw SQL through them).
FRAPPES_TRANSACTION_ENDS: set = set()


def watch_savepoints() -> None:
	"""Makes ``frappe.db.savepoint``, ``rollback(save_point=...)`` and ``release_savepoint``
	keep what is held in step with the database (once per process)."""
	if getattr(Database.savepoint, "fabric_watched", False):
		return
	set_savepoint, rollback, release = Database.savepoint, Database.rollback, Database.release_savepoint
	FRAPPES_TRANSACTION_ENDS.update({Database.commit.__code__, rollback.__code__})

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

	Database.savepoint = in_place_of(set_savepoint, savepoint)
	Database.rollback = in_place_of(rollback, rollback_watched)
	Database.release_savepoint = in_place_of(release, release_savepoint)


def in_place_of(original, wrapper):
	"""Returns ``wrapper``, made to stand in for the Frappe function ``original``: its name and
	docstring, and the mark that tells a second watch_* call that the wrap is in place."""
	wrapper.__doc__, wrapper.__name__ = original.__doc__, original.__name__
	wrapper.fabric_watched = True
	return wrapper


watch_savepoints()
