"""The outbox store on a MariaDB/MySQL Event Log table: appending, claiming and settling.

Relays claim rows with ``SELECT … FOR UPDATE SKIP LOCKED`` under READ COMMITTED, which takes no
gap locks: a relay publishing a batch never blocks a user's save that appends new events. The
table's shape, its statuses and the INSERT an append writes are in statements.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from typing import Any

from cauldron_fabric.core.envelope import dumps
from cauldron_fabric.core.markup import plain
from cauldron_fabric.core.outbox.statements import (
	DEFAULT_SEQUENCE,
	DEFAULT_TABLE,
	ERROR_LENGTH,
	FAILED,
	PENDING,
	PUBLISHED,
	backslash_escapes,
	build_append,
	index_statements,
)
from cauldron_fabric.core.ports import OutboxAppend, OutboxRecord, OutboxStore, Settlement
from cauldron_fabric.core.sqlsession import SqlSession

# How long a claim may sit idle before the server rolls it back and frees its rows. A relay
# that froze without dying (SIGSTOP, a paused container or VM, a network partition) keeps its
# connections open, and its batch and every later event of those documents would wait for
# wait_timeout (8 hours by default). A live relay's claim is idle while the broker acknowledges
# (publish timeout, a batch ahead's too) and while it backs off, about two minutes at most
# with the default settings; a claim rolled back under a live relay is published again, never lost.
CLAIM_IDLE_SECONDS = 300

# How many more windows a claim reads past rows it had to leave out (see claim).
MORE_WINDOWS = 4

# What a claim reads, in OutboxRecord's field order.
CLAIM_COLUMNS = ("name", "partition_key", "envelope", "attempts")
# Read beside them: a row with an error to clear once published, though maybe never attempted
# (held back unsent behind an earlier failure of its document).
CARRIES_ERROR = "last_error IS NOT NULL"


def local_now() -> dt.datetime:
	"""Returns the machine's naive local time, the default clock of the store."""
	return dt.datetime.now()


def excluding(ids: Sequence[int], max_runs: int = 64) -> str:
	"""Returns ``AND`` conditions leaving out the sorted integer ``ids``, written inline.

	Runs of consecutive ids become ``NOT BETWEEN`` ranges, which the range optimizer turns into
	gaps in the index scan; when the ids are too scattered for that, one ``NOT IN`` list.
	Integers only, so writing them into the statement is safe (and cheaper than binding
	thousands of parameters through the driver's escaping).
	"""
	if not ids:
		return ""
	runs: list[list[int]] = []
	for seq in ids:
		if runs and seq == runs[-1][1] + 1:
			runs[-1][1] = seq
		elif not runs or seq != runs[-1][1]:
			runs.append([seq, seq])
	if len(runs) > max_runs:
		return f" AND name NOT IN ({','.join(str(int(seq)) for seq in ids)})"
	return "".join(f" AND name NOT BETWEEN {int(first)} AND {int(end)}" for first, end in runs)


class SqlOutboxStore(OutboxStore):
	"""The outbox on its own DB-API connection (PyMySQL), one open claim at a time."""

	def __init__(
		self,
		connect: Callable[[], Any],
		*,
		table: str = DEFAULT_TABLE,
		sequence: str = DEFAULT_SEQUENCE,
		clock: Callable[[], dt.datetime] = local_now,
		claim_idle_seconds: int = CLAIM_IDLE_SECONDS,
	):
		self.table = table
		self.sequence = sequence
		self.clock = clock
		self._claimed: list[int] = []
		self._retried: set[int] = set()  # claimed rows attempted or held back before
		self.session = SqlSession(
			connect, "outbox", idle_transaction_seconds=claim_idle_seconds, on_drop=self._forget_claim
		)

	@property
	def connection(self):
		"""Returns the open connection (READ COMMITTED, no autocommit)."""
		return self.session.connection

	def _execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
		return self.session.execute(sql, params)[0]

	def _forget_claim(self) -> None:
		self._claimed = []
		self._retried = set()

	def ensure_indexes(self) -> None:
		"""Creates the composite indexes the relay's queries need, if missing."""
		rows = self._execute(f"SHOW INDEX FROM `{self.table}`")
		for statement in index_statements(self.table, {row[2] for row in rows}):
			self._execute(statement)

	def append(self, entries: Sequence[OutboxAppend], actor: str = "Administrator") -> None:
		"""Inserts the events on this store's connection; the caller commits."""
		if entries:
			sql, params = build_append(
				entries,
				actor=actor,
				now=self.clock(),
				table=self.table,
				sequence=self.sequence,
				escapes=backslash_escapes(self.connection),
			)
			self._execute(sql, params)

	def commit(self) -> None:
		"""Commits whatever this store's connection has pending."""
		self.session.commit()

	def claim(self, limit: int, ahead: Collection[int] = ()) -> list[OutboxRecord]:
		"""Locks due Pending rows (skipping rows other relays hold) and keeps per-key order."""
		if self._claimed:
			raise RuntimeError("claim() called twice without settle() or release()")
		self._retried = set()  # a claim that failed partway may have left its marks
		oldest = self._execute(
			f"SELECT name FROM `{self.table}` WHERE status = %s ORDER BY name LIMIT 1", (PENDING,)
		)
		if not oldest:
			self.session.rollback()
			return []
		ahead = set(ahead)
		wanted = int(limit)
		window = self._lock_due(oldest[0][0], wanted, ())
		if not window:
			self.session.rollback()
			return []
		records = self._in_key_order(window, ahead)
		waiting: set[str] = set()
		for _ in range(MORE_WINDOWS):
			# Rows left out for an earlier unpublished row of their key leave room: look past
			# them, without their keys, or one waiting document's backlog would fill every
			# window and starve all the others.
			kept = {r.seq for r in records}
			left_out = [r for r in window if r.seq not in kept]
			if not left_out or len(window) < wanted:
				break  # nothing left out, or no more due rows
			waiting.update(r.partition_key for r in left_out)
			wanted = int(limit) - len(records)
			window = self._lock_due(window[-1].seq + 1, wanted, sorted(waiting))
			if not window:
				break
			records += self._in_key_order(window, ahead | kept)
		if not records:
			self.release()
			return []
		self._claimed = [r.seq for r in records]
		return records

	def _lock_due(self, start: int, limit: int, leave_out: Sequence[str]) -> list[OutboxRecord]:
		"""Locks up to ``limit`` due Pending rows from id ``start`` on, skipping locked rows.

		Rows of the ``leave_out`` keys are not read. Locking goes through the primary key:
		through the status index it would also lock index entries of rows that SKIP LOCKED
		then skips, and the relay holding those rows would wait for them when it settles.
		"""
		keys = f" AND partition_key NOT IN ({', '.join(['%s'] * len(leave_out))})" if leave_out else ""
		rows = self._execute(
			f"""SELECT {", ".join(CLAIM_COLUMNS)}, {CARRIES_ERROR}
			FROM `{self.table}` FORCE INDEX (PRIMARY)
			WHERE name >= %s AND status = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s){keys}
			ORDER BY name LIMIT %s
			FOR UPDATE SKIP LOCKED""",
			(start, PENDING, self.clock(), *leave_out, limit),
		)
		self._retried.update(int(row[0]) for row in rows if row[3] or row[4])
		# A row written without a key (raw SQL) has no document order to keep; as None its key
		# made the ordering query's sort raise, and the relay stopped on every claim.
		return [OutboxRecord(row[0], row[1] or "", row[2], row[3]) for row in rows]

	def _in_key_order(self, records: list[OutboxRecord], ahead: set[int]) -> list[OutboxRecord]:
		"""Drops records that would overtake an earlier unpublished record of the same key.

		The earlier record is either held by another relay or waiting for its retry time;
		the later one must wait for it, or per-document order breaks. Records ``ahead`` are
		already with the transport, in front of these, so they block nothing.
		"""
		last = max(r.seq for r in records)
		# Fast path: when no Pending row up to the last claimed one lies outside the batch and
		# the rows ahead of it, nothing can be overtaken: the usual case with one relay and no
		# retries. Both are excluded by id (rows ahead may already be settled, and a stale
		# count could hide another relay's earlier row), as runs of consecutive ids so that
		# the index scan skips them instead of reading and discarding thousands of entries.
		mine = sorted({seq for seq in ahead if seq <= last} | {r.seq for r in records})
		(foreign,) = self._execute(
			f"SELECT COUNT(*) FROM `{self.table}` WHERE status = %s AND name <= %s{excluding(mine)}",
			(PENDING, last),
		)[0]
		if not int(foreign):
			return records
		keys = sorted({r.partition_key for r in records})
		placeholders = ", ".join(["%s"] * len(keys))
		earlier = self._execute(
			f"""SELECT name, partition_key FROM `{self.table}`
			WHERE partition_key IN ({placeholders}) AND name <= %s AND status = %s
			ORDER BY name""",
			(*keys, last, PENDING),
		)
		claimed = {r.seq for r in records}
		blocked: set[str] = set()
		for seq, key in earlier:
			seq = int(seq)
			if seq in ahead:
				continue
			if seq not in claimed:
				blocked.add(key)
			elif key in blocked:
				claimed.discard(seq)
		return [r for r in records if r.seq in claimed]

	def settle(self, settlements: Sequence[Settlement]) -> None:
		"""Writes every outcome in at most three statements and commits, releasing the row locks.

		``modified`` is left alone: it would move the row in Frappe's modified index for
		nothing, since ``published_at`` and ``attempts`` already tell when and how often.
		"""
		now = self.clock()
		first_try = [s for s in settlements if s.published and s.seq not in self._retried]
		retried = [s for s in settlements if s.published and s.seq in self._retried]
		failed = [s for s in settlements if not s.published]
		published = (
			"t.status = %s, t.published_at = %s, t.attempts = t.attempts + 1, t.topic = v.topic, "
			"t.kafka_partition = COALESCE(v.part, 0), t.kafka_offset = COALESCE(v.off, 0)"
		)
		if first_try:
			# The common case: a row published on its first attempt has no error or retry time
			# to clear, and a statement joining only numbers and the topic costs MariaDB less
			# than half of one that also carries the failure columns.
			self._update_from_rows(first_try, published, [PUBLISHED, now], with_failure=False)
		if retried:
			self._update_from_rows(
				retried,
				f"{published}, t.last_error = NULL, t.next_attempt_at = NULL",
				[PUBLISHED, now],
				with_failure=False,
			)
		if failed:
			# A row held back unsent has no destination of its own: it keeps the topic it last
			# went to (or none yet).
			self._update_from_rows(
				failed,
				"t.status = IF(v.permanent, %s, t.status), t.attempts = t.attempts + v.attempted, "
				"t.last_error = v.error, t.next_attempt_at = v.retry_at, t.topic = COALESCE(v.topic, t.topic)",
				[FAILED],
				with_failure=True,
			)
		self.session.commit()
		self._forget_claim()

	def _update_from_rows(
		self, settlements: Sequence[Settlement], assignments: str, params: list[Any], with_failure: bool
	) -> None:
		# One JSON parameter joined as a table: a thousand rows cost one short statement
		# instead of thousands of bound parameters (MariaDB 10.6+, MySQL 8).
		rows = [[s.seq, s.destination or None, s.partition, s.offset] for s in settlements]
		columns = "seq BIGINT PATH '$[0]', topic VARCHAR(255) PATH '$[1]', part INT PATH '$[2]', off BIGINT PATH '$[3]'"
		if with_failure:
			for row, s in zip(rows, settlements, strict=True):
				row += [
					plain(s.error)[:ERROR_LENGTH] or None,  # a broker's error: see plain
					1 if s.permanent else 0,
					s.retry_at.isoformat(sep=" ") if s.retry_at else None,
					1 if s.attempted else 0,
				]
			columns += (
				", error TEXT PATH '$[4]', permanent INT PATH '$[5]', retry_at DATETIME(6) PATH '$[6]',"
				" attempted INT PATH '$[7]'"
			)
		self._execute(
			f"""UPDATE JSON_TABLE(%s, '$[*]' COLUMNS({columns})) v
			STRAIGHT_JOIN `{self.table}` t ON t.name = v.seq SET {assignments}""",
			[dumps(rows), *params],
		)

	def release(self) -> None:
		"""Rolls back, giving the claimed rows to the next relay untouched."""
		self._forget_claim()
		self.session.rollback()

	def pending_count(self) -> int:
		"""Counts Pending rows (outside any claim)."""
		rows = self._execute(f"SELECT COUNT(*) FROM `{self.table}` WHERE status = %s", (PENDING,))
		if not self._claimed:
			self.session.rollback()
		return int(rows[0][0])

	def close(self) -> None:
		"""Rolls back anything open and closes the connection."""
		self.release()
		self.session.drop()
