"""The outbox in process memory: same contract as the SQL store, for tests and embedding."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

from cauldron_fabric.core.outbox.sql import local_now
from cauldron_fabric.core.outbox.statements import FAILED, PENDING, PUBLISHED, entry_status
from cauldron_fabric.core.ports import OutboxAppend, OutboxRecord, OutboxStore, Settlement


@dataclass
class MemoryRow:
	"""One event row, mutable as the relay settles it."""

	record: OutboxRecord
	status: str
	next_attempt_at: dt.datetime | None = None
	last_error: str | None = None
	destination: str = ""
	holder: int | None = None
	attempts: int = 0


@dataclass
class MemoryOutbox:
	"""The shared rows; each relay opens its own MemoryOutboxStore session on it."""

	rows: dict[int, MemoryRow] = field(default_factory=dict)
	lock: threading.Lock = field(default_factory=threading.Lock)
	next_seq: int = 1

	def session(self, clock: Callable[[], dt.datetime] = local_now) -> MemoryOutboxStore:
		"""Returns a new store session on these rows."""
		return MemoryOutboxStore(self, clock=clock)


class MemoryOutboxStore(OutboxStore):
	"""One relay's session on a MemoryOutbox; claims are exclusive between sessions."""

	def __init__(self, outbox: MemoryOutbox | None = None, *, clock: Callable[[], dt.datetime] = local_now):
		self.outbox = outbox or MemoryOutbox()
		self.clock = clock
		self._claimed: list[int] = []

	def append(self, entries: Sequence[OutboxAppend], actor: str = "Administrator") -> None:
		"""Appends rows immediately (memory has no transactions)."""
		with self.outbox.lock:
			for entry in entries:
				seq = self.outbox.next_seq
				self.outbox.next_seq += 1
				env = entry.envelope
				record = OutboxRecord(seq, env.partition_key, env.to_json())
				self.outbox.rows[seq] = MemoryRow(record, entry_status(entry))

	def claim(self, limit: int, ahead: Collection[int] = ()) -> list[OutboxRecord]:
		"""Claims due rows in order, never past an earlier pending row of the same key."""
		if self._claimed:
			raise RuntimeError("claim() called twice without settle() or release()")
		now = self.clock()
		blocked: set[str] = set()
		claimed: list[OutboxRecord] = []
		with self.outbox.lock:
			for seq in sorted(self.outbox.rows):
				row = self.outbox.rows[seq]
				if row.status != PENDING or seq in ahead:
					continue
				key = row.record.partition_key
				due = row.next_attempt_at is None or row.next_attempt_at <= now
				if row.holder is not None or not due or key in blocked:
					blocked.add(key)
					continue
				if len(claimed) >= limit:
					break
				row.holder = id(self)
				claimed.append(replace(row.record, attempts=row.attempts))
		self._claimed = [r.seq for r in claimed]
		return claimed

	def settle(self, settlements: Sequence[Settlement]) -> None:
		"""Applies outcomes and releases the claimed rows."""
		with self.outbox.lock:
			for s in settlements:
				row = self.outbox.rows[s.seq]
				row.attempts += s.attempted
				row.destination = s.destination or row.destination  # held back unsent: no new one
				if s.published:
					row.status, row.last_error, row.next_attempt_at = PUBLISHED, None, None
				else:
					row.last_error, row.next_attempt_at = s.error, s.retry_at
					if s.permanent:
						row.status = FAILED
			self._unhold()

	def release(self) -> None:
		"""Releases the claimed rows untouched."""
		with self.outbox.lock:
			self._unhold()

	def _unhold(self) -> None:
		for seq in self._claimed:
			self.outbox.rows[seq].holder = None
		self._claimed = []

	def pending_count(self) -> int:
		"""Counts rows still Pending."""
		with self.outbox.lock:
			return sum(1 for row in self.outbox.rows.values() if row.status == PENDING)

	def statuses(self) -> dict[int, str]:
		"""Returns every row's status by sequence number (for tests and inspection)."""
		with self.outbox.lock:
			return {seq: row.status for seq, row in self.outbox.rows.items()}
