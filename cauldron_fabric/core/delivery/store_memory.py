"""Delivery tracking in process memory: the same contract as the SQL store, for tests and embedding."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

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
from cauldron_fabric.core.outbox.sql import local_now


@dataclass
class _Row:
	seq: int
	subscription: str
	event_id: str
	envelope_json: str
	ordering_key: str | None
	next_attempt_at: dt.datetime
	status: str = PENDING
	attempts: int = 0
	last_error: str | None = None
	last_status_code: int | None = None
	last_latency_ms: float | None = None
	delivered_at: dt.datetime | None = None
	history: list[dict] = field(default_factory=list)
	holder: int | None = None


@dataclass
class MemoryDeliveries:
	"""The shared rows; each worker opens its own MemoryDeliveryStore session on them."""

	rows: dict[int, _Row] = field(default_factory=dict)
	keys: dict[tuple[str, str], int] = field(default_factory=dict)
	lock: threading.Lock = field(default_factory=threading.Lock)
	next_seq: int = 1

	def session(self, clock: Callable[[], dt.datetime] = local_now) -> MemoryDeliveryStore:
		"""Returns a new store session on these rows."""
		return MemoryDeliveryStore(self, clock=clock)


class MemoryDeliveryStore(DeliveryStore):
	"""One worker's session on MemoryDeliveries; claims are exclusive between sessions."""

	def __init__(
		self, deliveries: MemoryDeliveries | None = None, *, clock: Callable[[], dt.datetime] = local_now
	):
		self.deliveries = deliveries or MemoryDeliveries()
		self.clock = clock
		self._claimed: list[int] = []

	def enqueue(self, requests: Sequence[DeliveryRequest], actor: str = "Administrator") -> int:
		"""Adds the deliveries at once (memory has no transactions)."""
		added, now = 0, self.clock()
		with self.deliveries.lock:
			for request in requests:
				key = (request.subscription, request.envelope.id)
				if key in self.deliveries.keys:
					continue
				seq = self.deliveries.next_seq
				self.deliveries.next_seq += 1
				self.deliveries.keys[key] = seq
				self.deliveries.rows[seq] = _Row(
					seq,
					request.subscription,
					request.envelope.id,
					request.envelope.to_json(),
					request.ordering_key,
					now,
				)
				added += 1
		return added

	def claim(self, limit: int) -> list[DeliveryJob]:
		"""Claims due rows oldest first, one per ordering key, never past an unsettled one."""
		if self._claimed:
			raise RuntimeError("claim() called twice without settle() or release()")
		now, blocked, claimed = self.clock(), set(), []
		with self.deliveries.lock:
			for seq in sorted(self.deliveries.rows):
				row = self.deliveries.rows[seq]
				key = (row.subscription, row.ordering_key) if row.ordering_key else None
				if row.status != PENDING or key in blocked:
					continue
				if key:
					blocked.add(key)
				if row.holder is not None or row.next_attempt_at > now:
					continue
				if len(claimed) >= limit:
					break
				claimed.append(self._hold(seq, row))
		self._claimed = [job.seq for job in claimed]
		return claimed

	def reclaim(self, leases: Mapping[int, dt.datetime]) -> list[DeliveryJob]:
		"""Claims the leased rows still pending at their lease and held by no session."""
		if self._claimed:
			raise RuntimeError("reclaim() called while a claim is open")
		claimed = []
		with self.deliveries.lock:
			for seq, lease in leases.items():
				row = self.deliveries.rows.get(seq)
				if (
					row is None
					or row.status != PENDING
					or row.holder is not None
					or row.next_attempt_at != lease
				):
					continue
				claimed.append(self._hold(seq, row))
		self._claimed = [job.seq for job in claimed]
		return claimed

	def _hold(self, seq: int, row) -> DeliveryJob:
		row.holder = id(self)
		return DeliveryJob(
			seq, row.subscription, row.event_id, row.envelope_json, row.attempts, row.ordering_key,
			tuple(row.history),
		)  # fmt: skip

	def settle(self, attempts: Sequence[DeliveryAttempt]) -> None:
		"""Applies the attempts and releases the claimed rows."""
		with self.deliveries.lock:
			for attempt in attempts:
				row = self.deliveries.rows[attempt.seq]
				row.status = attempt.row_status
				row.next_attempt_at = attempt.next_attempt_at or row.next_attempt_at
				if not attempt.counts:
					continue
				row.attempts += 1
				row.last_error, row.last_status_code = attempt.error, attempt.status_code
				row.last_latency_ms = attempt.latency_ms
				row.history = [*row.history, attempt.summary()][-HISTORY_LIMIT:]
				if attempt.status == DELIVERED:
					row.delivered_at = self.clock()
			self._unhold()

	def release(self) -> None:
		"""Releases the claimed rows untouched."""
		with self.deliveries.lock:
			self._unhold()

	def _unhold(self) -> None:
		for seq in self._claimed:
			self.deliveries.rows[seq].holder = None
		self._claimed = []

	def requeue(self, seqs: Sequence[int], actor: str = "Administrator") -> int:
		"""Makes dead or discarded rows pending and due now, with a fresh attempt count."""
		return self._change(seqs, (DEAD, DISCARDED), PENDING, reset=True)

	def discard(self, seqs: Sequence[int], actor: str = "Administrator") -> int:
		"""Marks pending or dead rows discarded."""
		return self._change(seqs, (PENDING, DEAD), DISCARDED, reset=False)

	def _change(self, seqs: Sequence[int], allowed: tuple[str, ...], status: str, reset: bool) -> int:
		changed = 0
		with self.deliveries.lock:
			for seq in seqs:
				row = self.deliveries.rows.get(seq)
				if row is None or row.status not in allowed or row.holder is not None:
					continue
				row.status = status
				if reset:
					row.attempts, row.next_attempt_at = 0, self.clock()
				changed += 1
		return changed

	def get(self, seq: int) -> DeliveryRow | None:
		"""Returns one row's state and history."""
		with self.deliveries.lock:
			row = self.deliveries.rows.get(seq)
			if row is None:
				return None
			return DeliveryRow(
				row.seq, row.subscription, row.event_id, row.status, row.attempts, row.ordering_key,
				row.next_attempt_at, row.last_error, row.last_status_code, row.last_latency_ms,
				row.delivered_at, tuple(row.history),
			)  # fmt: skip

	def status_counts(self) -> dict[str, int]:
		"""Counts rows per status."""
		with self.deliveries.lock:
			return dict(Counter(row.status for row in self.deliveries.rows.values()))
