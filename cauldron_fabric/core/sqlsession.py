"""One database session for the SQL stores (outbox, deliveries, consumer tracking).

Each store runs on its own DB-API connection (PyMySQL) under READ COMMITTED, which takes no
gap locks, so a relay or worker never blocks a user's save that appends rows. Transactions
are explicit. A lost connection becomes a retryable error and the next use reconnects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from cauldron_fabric.core.errors import RetryableError

# 2003 can't connect, 2006 server gone, 2013 lost during query, 1927 killed, 4031 idle timeout.
CONNECTION_LOST = frozenset({2003, 2006, 2013, 1927, 4031})


class StoreUnavailable(RetryableError):
	"""The database could not be reached; the work is retried with backoff."""


# The database refused a statement for now, not for what it says: 1205 lock wait timeout, 1213
# deadlock, 1114 table full, 1021 disk full, 1037 and 1041 out of memory, 1290 and 1792 read-only
# (a replica, or a primary being failed over).
TRANSIENT = frozenset({1205, 1213, 1114, 1021, 1037, 1041, 1290, 1792})


def error_code(exc: BaseException) -> int | None:
	"""Returns the MySQL error number of a driver exception, if it carries one, also through an
	exception raised for it: one that wraps it (Frappe's QueryDeadlockError wraps PyMySQL's), is
	raised from it, or while handling it (Frappe's InReadOnlyMode), unless ``from None`` said
	it is not about it."""
	seen = 0
	while exc is not None and seen < 5:
		if exc.args and isinstance(exc.args[0], int):
			return exc.args[0]
		inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
		during = None if exc.__suppress_context__ else exc.__context__
		exc, seen = inner or exc.__cause__ or during, seen + 1
	return None


def is_transient_error(exc: BaseException) -> bool:
	"""Tells whether the database refused a statement for now (see TRANSIENT): it may succeed later."""
	return error_code(exc) in TRANSIENT


def is_connection_error(exc: BaseException) -> bool:
	"""Tells whether an exception means the connection itself is gone."""
	return error_code(exc) in CONNECTION_LOST or type(exc).__name__ == "InterfaceError"


def is_outage_error(exc: BaseException) -> bool:
	"""Tells whether an exception is a database outage, which work waits out: the connection is
	gone, or the database refused a statement for now."""
	return is_connection_error(exc) or is_transient_error(exc)


class SqlSession:
	"""A lazily opened connection in READ COMMITTED, without autocommit.

	``idle_transaction_seconds`` makes the server roll back a transaction left idle that long
	and close the connection (MariaDB's idle_transaction_timeout): the locks of a process that
	froze without dying go then, instead of after wait_timeout.
	"""

	def __init__(
		self,
		connect: Callable[[], Any],
		purpose: str,
		*,
		unavailable: type[RetryableError] = StoreUnavailable,
		lock_wait_seconds: int = 10,
		idle_transaction_seconds: int | None = None,
		on_drop: Callable[[], None] | None = None,
	):
		self._connect = connect
		self._conn = None
		self.purpose = purpose
		self.unavailable = unavailable
		self.lock_wait_seconds = int(lock_wait_seconds)
		self.idle_transaction_seconds = idle_transaction_seconds
		self.on_drop = on_drop

	@property
	def is_open(self) -> bool:
		"""Tells whether a connection is open right now."""
		return self._conn is not None

	@property
	def connection(self) -> Any:
		"""Returns the open connection, connecting on first use."""
		if self._conn is None:
			try:
				conn = self._connect()
				with conn.cursor() as cur:
					cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
					cur.execute(f"SET SESSION innodb_lock_wait_timeout = {self.lock_wait_seconds}")
					if self.idle_transaction_seconds:
						cur.execute(
							f"SET SESSION idle_transaction_timeout = {int(self.idle_transaction_seconds)}"
						)
				conn.autocommit(False)
			except Exception as exc:
				raise self.unavailable(f"Cannot connect to the {self.purpose} database: {exc}.") from exc
			self._conn = conn
		return self._conn

	def execute(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[tuple], int]:
		"""Runs one statement; returns its rows and the affected row count."""
		with self._lost_is_unavailable(), self.connection.cursor() as cur:
			count = cur.execute(sql, params)
			return list(cur.fetchall() or ()), int(count or 0)

	@contextmanager
	def _lost_is_unavailable(self) -> Iterator[None]:
		"""Turns a lost connection inside the block into the retryable error (and drops it)."""
		try:
			yield
		except self.unavailable:
			raise
		except Exception as exc:
			self.raise_if_lost(exc)
			raise

	def raise_if_lost(self, exc: BaseException) -> None:
		"""Drops the connection and raises the retryable error when ``exc`` means it is gone, or
		that the database refused the statement for now (see TRANSIENT: a read-only database
		during a failover, a deadlock, a full disk), which a relay or worker waits out with its
		backoff instead of stopping; the new connection starts afresh."""
		if is_connection_error(exc):
			problem = f"Lost the {self.purpose} database connection"
		elif is_transient_error(exc):
			problem = f"The {self.purpose} database refused a statement for now"
		else:
			return
		self.drop()
		raise self.unavailable(f"{problem}: {exc}.") from exc

	def commit(self) -> None:
		"""Commits the open transaction; a lost connection becomes the retryable error."""
		with self._lost_is_unavailable():
			self.connection.commit()

	def rollback(self) -> None:
		"""Rolls back the open transaction; a broken connection is dropped instead."""
		if self._conn is not None:
			try:
				self._conn.rollback()
			except Exception:
				self.drop()

	def drop(self) -> None:
		"""Closes the connection (quietly) so the next use opens a fresh one."""
		conn, self._conn = self._conn, None
		if self.on_drop is not None:
			self.on_drop()
		if conn is not None:
			try:
				conn.close()
			except Exception:
				pass
