"""Writes the fabric records no event for, or records another way than it would like (a
statement it cannot read, a read or a copy the database refuses, rows loaded from a file):
each told once per process in the ``cauldron_fabric`` log, with what to do about it."""

from __future__ import annotations

from contextlib import contextmanager

import frappe

# The keys (statement starts, "<what> <DocType>") already logged by this process.
LOGGED: set[str] = set()
# A statement's start may hold its values, so a long-running process meeting many such
# statements would keep a key for each: past this many, the keys are forgotten and logged anew.
LOGGED_LIMIT = 1000


def log_once(key: str, message: str, *args) -> None:
	"""Logs the warning ``message`` (%-formatted with ``args``), once per process and ``key``
	(once more after LOGGED_LIMIT other keys)."""
	if key not in LOGGED:
		if len(LOGGED) >= LOGGED_LIMIT:
			LOGGED.clear()
		LOGGED.add(key)
		frappe.logger("cauldron_fabric").warning(message, *args)


class ReadRefused(Exception):
	"""The database refused the fabric's read of what a statement is about to write (the
	statement names something it refuses, or the site's user may write a table it may not read
	with a locking read): the statement runs as it is."""

	def unrecorded(self, kind: str, query: str) -> Unrecorded:
		return Unrecorded(kind, query, self.__cause__ or self)


@contextmanager
def read_or_refused(refusals: type[BaseException] | tuple = Exception):
	"""Runs the fabric's read of what a statement is about to write: a deadlock or a lock wait
	timeout is raised as it is (the statement waits on the same locks, and a deadlock has rolled
	the transaction back, which running the statement after it would hide); any other of the
	``refusals`` (by default any error: the read's own) is ReadRefused (Frappe's own run of the
	statement then raises it, which its caller may expect, as frappe.db.is_missing_column, or
	runs). Around the whole planning of a statement, only the database's errors are refusals."""
	try:
		yield
	except (frappe.QueryDeadlockError, frappe.QueryTimeoutError, ReadRefused):
		raise
	except refusals as error:
		raise ReadRefused() from error


class Unrecorded:
	"""A statement whose rows the fabric could not read. When it fails too, its own error says
	why; when it runs, it wrote with no event, which is logged (once per process and start)."""

	def __init__(self, kind: str, query: str, error: BaseException) -> None:
		self.kind, self.query, self.error = kind, query, error

	def record(self) -> None:
		start = statement_start(self.query)
		log_once(
			f"unread {start}",
			"Cauldron Fabric records no event for this %s: the database refused its read of the "
			"rows before it ran (%s), and the statement then ran: %s",
			self.kind.upper(),
			self.error,
			start,
		)


def log_unreadable(kind: str, query: str) -> None:
	"""Logs, once per process and statement start, a write the fabric cannot read."""
	start = statement_start(query)
	log_once(
		start,
		"Cauldron Fabric records no event for this %s, whose tables or columns it cannot tell "
		"apart (qualify each SET column with its table or alias; INSERT with a column list (or "
		"SET), `name` in it, and VALUES of plain literals or a SELECT; keep SQL out of /*! */ "
		"comments; select rows picked at random first, then write them by name): %s",
		kind.upper(),
		start,
	)


class Loaded:
	"""A LOAD DATA into watched tables: its rows come from a file the fabric does not read.
	When it ran, that is logged (once per process and statement start)."""

	def __init__(self, query: str, doctypes: list[str]) -> None:
		self.query, self.doctypes = query, doctypes

	def record(self) -> None:
		start = statement_start(self.query)
		log_once(
			start,
			"Cauldron Fabric records no event for this LOAD DATA into %s: its rows come from a "
			"file the fabric does not read. Load the file into a table of your own, then "
			"INSERT … SELECT from it (an event per document): %s",
			", ".join(self.doctypes),
			start,
		)


def statement_start(query: str) -> str:
	"""Returns how a log names a statement: its start, on one line."""
	return " ".join(query.split())[:120]
