"""What a transaction holds back for its commit: deferred db_sets, rows changed alone, the
DocTypes whose schemas to refresh, the registry changes to announce.

Held per transaction in frappe.local and handled by a before_commit (or after_commit)
callback; gone with a rollback whichever way it comes.
"""

from __future__ import annotations

import weakref

import frappe


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
	"""
	frappe.db.after_commit.add(TransactionEnd(end))


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
