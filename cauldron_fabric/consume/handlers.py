"""The handlers apps register in their hooks, run as the handler user inside the consumed event.

An app lists handlers by event type pattern in its ``hooks.py``::

    fabric_handlers = {"agent.approval.requested": ["my_app.approvals.on_request"]}

A consumer calls ``on_request(envelope, context)`` (a core ``Envelope`` and a ``HandlerContext``;
subscriptions with a handler destination call the same function with a rendered payload
instead). It runs as the Fabric Settings handler user, with that user's permissions, and inside
``caused_by(envelope)``: every event its document changes emit has the consumed event as
``causationId`` and stays in its conversation.

Errors: a Frappe validation or permission error will not change on a retry, so the event goes
straight to the dead letters; a missing document, a missing link target or a concurrent edit may
be an ordering matter and is retried, like any other error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import frappe
from frappe.utils import strip_html

from cauldron_fabric.core.consumer.handlers import Handler, HandlerContext, HandlerTable
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import PermanentError
from cauldron_fabric.emit.context import caused_by

HOOK = "fabric_handlers"
# Set by the tracking store right after the Processed Event mark: a handler's rollback goes back here.
UNIT_SAVEPOINT = "fabric_unit_of_work"
RETRIED_VALIDATION_ERRORS = (
	frappe.DoesNotExistError,
	frappe.LinkValidationError,
	frappe.TimestampMismatchError,
)


class HandlerRefused(PermanentError):
	"""A handler refused an event for a reason a retry will not change (validation, permission)."""


def reason_of(error: BaseException) -> str:
	"""Returns an error's message, or the message Frappe showed with it (PermissionError has none)."""
	shown = [strip_html(str(m.get("message") or "")) for m in frappe.get_message_log() if isinstance(m, dict)]
	return str(error) or (shown[-1] if shown else type(error).__name__)


def hooked_handlers() -> list[tuple[str, str]]:
	"""Returns ``(pattern, dotted path)`` for every handler the installed apps register, in hook order."""
	hooks = frappe.get_hooks(HOOK) or {}
	entries = []
	for pattern, paths in hooks.items() if isinstance(hooks, Mapping) else []:
		for path in [paths] if isinstance(paths, str) else paths or []:
			entries.append((pattern, path))
	return entries


class SiteHandler:
	"""Calls one handler function as the handler user, inside the consumed event's causation."""

	def __init__(self, path: str, function: Callable[..., Any], user: str):
		self.path, self.function, self.user = path, function, user
		self.__name__ = path

	def __call__(self, envelope: Envelope, context: HandlerContext) -> None:
		# Every event starts from a fresh session of the handler user: set_user also drops the
		# per-process permission caches (role permissions, user permissions), so a role taken
		# from or given to the handler user counts from the next event on.
		frappe.set_user(self.user)
		frappe.flags.ignore_permissions = False
		frappe.clear_messages()
		try:
			with caused_by(envelope.id, envelope.metadata.correlation_id), unit_of_work():
				self.function(envelope, context)
		except RETRIED_VALIDATION_ERRORS:
			raise
		except (frappe.ValidationError, frappe.PermissionError) as exc:
			raise HandlerRefused(
				f"Handler {self.path} refused {envelope.type} {envelope.id} as {self.user}: {reason_of(exc)}.",
				hint="Fix the cause (the handler user's permissions or the data), then retry the dead letter.",
			) from exc


@contextmanager
def unit_of_work() -> Iterator[None]:
	"""Keeps a handler's ``frappe.db.commit()`` and ``rollback()`` inside the event's transaction.

	Some Frappe code commits by itself; committed there, the Processed Event mark and half of the
	handler's writes would outlive a later failure, and the retry would skip the event as done.
	A commit waits for the consumer's; a rollback undoes the handler's writes but keeps the mark.
	A rollback to the handler's own savepoint stays one: what it did before that savepoint, and
	what is held for the commit since, is kept.
	"""
	db = frappe.db

	def deferred_commit(*args, **kwargs):
		frappe.logger("cauldron_fabric").info("a handler committed; the commit waits for the event's")

	def partial_rollback(*args, save_point=None, **kwargs):
		if save_point:
			connection = frappe.local.db  # frappe.db is a proxy: the class's own rollback is needed
			type(connection).rollback(connection, save_point=save_point)
			return
		db.before_commit.reset()
		db.after_commit.reset()
		db.sql(f"rollback to savepoint {UNIT_SAVEPOINT}")
		db.after_rollback.run()

	db.commit, db.rollback = deferred_commit, partial_rollback
	try:
		yield
	finally:
		db.__dict__.pop("commit", None)
		db.__dict__.pop("rollback", None)


def load_handler_table(
	user: str, extra: Mapping[str, Handler | Sequence[Handler]] | None = None
) -> HandlerTable:
	"""Returns the hooked handlers (plus ``extra`` functions by pattern) wrapped to run as ``user``."""
	entries: list[tuple[str, Handler]] = []
	for pattern, path in hooked_handlers():
		entries.append((pattern, SiteHandler(path, frappe.get_attr(path), user)))
	for pattern, functions in (extra or {}).items():
		for function in functions if isinstance(functions, list | tuple) else [functions]:
			name = f"{function.__module__}.{function.__qualname__}"
			entries.append((pattern, SiteHandler(name, function, user)))
	return HandlerTable(entries)
