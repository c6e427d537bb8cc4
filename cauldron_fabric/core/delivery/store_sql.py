"""Delivery tracking on a MariaDB table shaped like a Frappe DocType table (``Event Delivery``).

One row per (subscription, event), unique on the pair, named from a sequence like the Event Log
(an ``autoincrement`` DocType). Status code and latency are NOT NULL like Frappe's Int and
Float columns, 0 standing for "none". Workers claim due rows with ``SELECT … FOR UPDATE SKIP LOCKED``
under READ COMMITTED and hold them for the whole attempt, so two workers never attempt the same
delivery at once and no gap locks block the user's saves that enqueue new deliveries.
Dead rows (status ``Dead``) are the dead letters; ``attempt_log`` keeps each attempt as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cauldron_fabric.core.delivery.overdue import LONGEST_ATTEMPT_SECONDS
from cauldron_fabric.core.delivery.records import (
	DEAD,
	DELIVERED,
	DISCARDED,
	HISTORY_LIMIT,
	PENDING,
	DeliveryAttempt,
	DeliveryJob,
	DeliveryRequest,
	DeliveryRow,
)
from cauldron_fabric.core.delivery.store import DeliveryStore
from cauldron_fabric.core.envelope import dumps
from cauldron_fabric.core.outbox.sql import local_now
from cauldron_fabric.core.outbox.statements import STANDARD_COLUMNS, backslash_escapes, sequenced_insert
from cauldron_fabric.core.sqlsession import SqlSession

DEFAULT_TABLE = "tabEvent Delivery"
DEFAULT_SEQUENCE = "event_delivery_id_seq"
ERROR_LENGTH = 2000
ENQUEUE_COLUMNS = (
	"subscription",
	"event_id",
	"event_type",
	"ordering_key",
	"envelope",
	"status",
	"attempts",
	"next_attempt_at",
)
INDEXES = {
	"fabric_delivery_due": ("status", "next_attempt_at", "name"),
	"fabric_delivery_order": ("subscription", "ordering_key", "status", "name"),
}
ROW_COLUMNS = (
	"name, subscription, event_id, status, attempts, ordering_key, next_attempt_at, last_error, "
	"last_status_code, last_latency_ms, delivered_at, attempt_log"
)


def create_table_sql(table: str = DEFAULT_TABLE, sequence: str = DEFAULT_SEQUENCE) -> list[str]:
	"""Returns DDL for a standalone delivery table with the Event Delivery DocType's shape.

	Frappe creates the real table from the DocType (then ``ensure_indexes`` adds the composite
	indexes); this exists for the core's tests and for running workers without Frappe.
	"""
	return [
		f"CREATE SEQUENCE IF NOT EXISTS `{sequence}` NOCACHE",
		f"""CREATE TABLE IF NOT EXISTS `{table}` (
			name bigint primary key,
			creation datetime(6), modified datetime(6), owner varchar(140), modified_by varchar(140),
			docstatus int not null default 0, idx int not null default 0,
			subscription varchar(140), event_id varchar(140), event_type varchar(140), ordering_key varchar(280),
			envelope longtext, status varchar(140), attempts int not null default 0,
			next_attempt_at datetime(6), delivered_at datetime(6), last_error text,
			last_status_code int not null default 0, last_latency_ms decimal(21,9) not null default 0,
			attempt_log longtext,
			unique key fabric_subscription_event (subscription, event_id)
		) ENGINE=InnoDB CHARACTER SET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
	]


def build_enqueue(
	requests: Sequence[DeliveryRequest],
	*,
	actor: str,
	now: dt.datetime,
	table: str = DEFAULT_TABLE,
	sequence: str = DEFAULT_SEQUENCE,
	escapes: bool = True,
) -> tuple[str, list[Any]]:
	"""Returns one INSERT adding ``requests`` (duplicates skipped) and its ``%s`` parameters.

	The Frappe layer runs it in the transaction that records the event (emit.writes).
	``escapes`` says whether the connection reads a backslash as an escape (see
	core.outbox.statements.backslash_escapes).
	"""
	bodies: list[str] = []
	params: list[Any] = []
	serialised: dict[int, str] = {}  # an event matching several subscriptions is serialised once
	for request in requests:
		env = request.envelope
		body = serialised.get(id(env))
		if body is None:
			body = serialised[id(env)] = env.to_json()
		bodies.append(body)
		params += [now, now, actor, actor, 0, 0]
		params += [
			request.subscription,
			env.id,
			env.type,
			request.ordering_key,
			PENDING,
			0,
			now,
		]
	insert = sequenced_insert(table, sequence, (*STANDARD_COLUMNS, *ENQUEUE_COLUMNS), bodies, escapes)
	return f"{insert} ON DUPLICATE KEY UPDATE name = name", params


def idle_claim_limit(batch_size: int = 200, concurrency: int = 16) -> int:
	"""Returns how long a claim may sit idle before the database frees its rows.

	A worker that froze without dying (SIGSTOP, a paused container or VM) keeps its connection,
	so its rows, and every later delivery of their entities, would wait for wait_timeout (8
	hours by default). A live worker's claim is idle while the engine attempts the batch,
	``concurrency`` at a time, each at most a webhook's longest timeout; twice that is the limit,
	because a claim freed under a live worker is attempted again.
	"""
	rounds = -(-max(1, batch_size) // max(1, concurrency))
	return 2 * rounds * LONGEST_ATTEMPT_SECONDS


class SqlDeliveryStore(DeliveryStore):
	"""The delivery queue on its own DB-API connection (PyMySQL), one open claim at a time."""

	def __init__(
		self,
		connect: Callable[[], Any],
		*,
		table: str = DEFAULT_TABLE,
		sequence: str = DEFAULT_SEQUENCE,
		clock: Callable[[], dt.datetime] = local_now,
		claim_idle_seconds: int | None = None,
	):
		self.table, self.sequence, self.clock = table, sequence, clock
		self._claimed: dict[int, tuple] = {}
		self.session = SqlSession(
			connect,
			"delivery",
			idle_transaction_seconds=claim_idle_seconds or idle_claim_limit(),
			on_drop=self._forget_claim,
		)

	@property
	def connection(self):
		"""Returns the open connection (READ COMMITTED, no autocommit)."""
		return self.session.connection

	def _execute(self, sql: str, params: Sequence[Any] | None = None) -> tuple[list[tuple], int]:
		return self.session.execute(sql, params)

	def _forget_claim(self) -> None:
		self._claimed = {}

	def ensure_indexes(self) -> None:
		"""Creates the composite indexes the workers' queries need, if missing."""
		rows, _ = self._execute(f"SHOW INDEX FROM `{self.table}`")
		existing = {row[2] for row in rows}
		for name, columns in INDEXES.items():
			if name not in existing:
				self._execute(
					f"CREATE INDEX `{name}` ON `{self.table}` ({', '.join(f'`{c}`' for c in columns)})"
				)

	def enqueue(self, requests: Sequence[DeliveryRequest], actor: str = "Administrator") -> int:
		"""Inserts the deliveries on this store's connection; the caller commits."""
		if not requests:
			return 0
		sql, params = build_enqueue(
			requests,
			actor=actor,
			now=self.clock(),
			table=self.table,
			sequence=self.sequence,
			escapes=backslash_escapes(self.connection),
		)
		return self._execute(sql, params)[1]

	def commit(self) -> None:
		"""Commits whatever this store's connection has pending."""
		self.session.commit()

	def claim(self, limit: int) -> list[DeliveryJob]:
		"""Locks due rows (skipping rows other workers hold), one per ordering key, in key order."""
		if self._claimed:
			raise RuntimeError("claim() called twice without settle() or release()")
		# An ordered row is claimable only as its key's oldest Pending row, decided before the
		# LIMIT: a retried or deferred first row sorts behind its own backlog by time, and a
		# window of that backlog filtered afterwards would come back empty for ever.
		rows, _ = self._execute(
			f"""SELECT d.name, d.subscription, d.event_id, d.envelope, d.attempts, d.ordering_key, d.attempt_log
			FROM `{self.table}` d WHERE d.status = %s AND d.next_attempt_at <= %s
			AND (COALESCE(d.ordering_key, '') = '' OR NOT EXISTS (
				SELECT 1 FROM `{self.table}` e
				WHERE e.subscription = d.subscription AND e.ordering_key = d.ordering_key
				AND e.status = %s AND e.name < d.name))
			ORDER BY d.next_attempt_at, d.name LIMIT %s FOR UPDATE SKIP LOCKED""",
			(PENDING, self.clock(), PENDING, int(limit)),
		)
		if not rows:
			self.release()
			return []
		jobs = [
			DeliveryJob(int(r[0]), r[1], r[2], r[3], int(r[4] or 0), r[5], tuple(json.loads(r[6] or "[]")))
			for r in rows
		]
		self._claimed = {job.seq: job.history for job in jobs}
		return jobs

	def reclaim(self, leases: Mapping[int, dt.datetime]) -> list[DeliveryJob]:
		"""Locks the leased rows still pending at their lease (skipping rows another worker holds)."""
		if self._claimed:
			raise RuntimeError("reclaim() called while a claim is open")
		if not leases:
			return []
		rows, _ = self._execute(
			f"""SELECT name, subscription, event_id, envelope, attempts, ordering_key, attempt_log, next_attempt_at
			FROM `{self.table}` WHERE name IN ({", ".join(["%s"] * len(leases))}) AND status = %s
			FOR UPDATE SKIP LOCKED""",
			[*(int(seq) for seq in leases), PENDING],
		)
		jobs = [
			DeliveryJob(int(r[0]), r[1], r[2], r[3], int(r[4] or 0), r[5], tuple(json.loads(r[6] or "[]")))
			for r in rows
			if r[7] == leases.get(int(r[0]))
		]
		if not jobs:
			self.release()
			return []
		self._claimed = {job.seq: job.history for job in jobs}
		return jobs

	def settle(self, attempts: Sequence[DeliveryAttempt]) -> None:
		"""Writes every outcome in at most two statements and commits, releasing the row locks."""
		now = self.clock()
		counted = [a for a in attempts if a.counts]
		deferred = [a for a in attempts if not a.counts]
		if counted:
			self._update_from_rows(
				counted,
				("seq", "status", "next_at", "error", "code", "latency", "log", "delivered"),
				lambda a: [
					a.seq,
					a.row_status,
					a.next_attempt_at,
					(a.error or "")[:ERROR_LENGTH] or None,
					a.status_code,
					a.latency_ms,
					dumps([*self._claimed.get(a.seq, ()), a.summary()][-HISTORY_LIMIT:]),
					now if a.status == DELIVERED else None,
				],
				"t.status = v.status, t.attempts = t.attempts + 1, "
				"t.next_attempt_at = COALESCE(v.next_at, t.next_attempt_at), t.last_error = v.error, "
				"t.last_status_code = COALESCE(v.code, 0), t.last_latency_ms = COALESCE(v.latency, 0), "
				"t.attempt_log = v.log, "
				"t.delivered_at = COALESCE(v.delivered, t.delivered_at), t.modified = %s",
				now,
			)
		if deferred:
			self._update_from_rows(
				deferred,
				("seq", "next_at"),
				lambda a: [a.seq, a.next_attempt_at],
				"t.next_attempt_at = v.next_at, t.modified = %s",
				now,
			)
		self.session.commit()
		self._claimed = {}

	def _update_from_rows(self, attempts, names, values, assignments: str, now: dt.datetime) -> None:
		select = "SELECT " + ", ".join(f"%s AS {name}" for name in names)
		params: list[Any] = []
		for attempt in attempts:
			params += values(attempt)
		derived = " UNION ALL ".join([select] * len(attempts))
		self._execute(
			f"UPDATE `{self.table}` t JOIN ({derived}) v ON t.name = v.seq SET {assignments}", [*params, now]
		)

	def release(self) -> None:
		"""Rolls back, giving the claimed rows to the next worker untouched."""
		self._claimed = {}
		self.session.rollback()

	def requeue(self, seqs: Sequence[int], actor: str = "Administrator") -> int:
		"""Makes dead or discarded rows pending and due now with a fresh attempt count; commits."""
		return self._change(
			seqs,
			(DEAD, DISCARDED),
			"status = %s, attempts = 0, next_attempt_at = %s",
			[PENDING, self.clock()],
			actor,
		)

	def discard(self, seqs: Sequence[int], actor: str = "Administrator") -> int:
		"""Marks pending or dead rows discarded; commits."""
		return self._change(seqs, (PENDING, DEAD), "status = %s", [DISCARDED], actor)

	def _change(self, seqs, allowed: tuple[str, ...], assignments: str, params: list, actor: str) -> int:
		if not seqs:
			return 0
		_, count = self._execute(
			f"""UPDATE `{self.table}` SET {assignments}, modified = %s, modified_by = %s
			WHERE name IN ({", ".join(["%s"] * len(seqs))}) AND status IN ({", ".join(["%s"] * len(allowed))})""",
			[*params, self.clock(), actor, *[int(s) for s in seqs], *allowed],
		)
		self.session.commit()
		return count

	def get(self, seq: int) -> DeliveryRow | None:
		"""Returns one row's state and history (outside any claim)."""
		rows, _ = self._execute(f"SELECT {ROW_COLUMNS} FROM `{self.table}` WHERE name = %s", (int(seq),))
		if not self._claimed:
			self.session.rollback()
		if not rows:
			return None
		r = rows[0]
		# Like Frappe's Int and Float columns these are NOT NULL: 0 stands for "none".
		code = int(r[8]) or None if r[8] is not None else None
		latency = float(r[9]) or None if r[9] is not None else None
		history = tuple(json.loads(r[11] or "[]"))
		return DeliveryRow(
			int(r[0]), r[1], r[2], r[3], int(r[4]), r[5], r[6], r[7], code, latency, r[10], history
		)

	def status_counts(self) -> dict[str, int]:
		"""Counts rows per status."""
		rows, _ = self._execute(f"SELECT status, COUNT(*) FROM `{self.table}` GROUP BY status")
		if not self._claimed:
			self.session.rollback()
		return {status: int(count) for status, count in rows}

	def close(self) -> None:
		"""Rolls back anything open and closes the connection."""
		self.release()
		self.session.drop()
