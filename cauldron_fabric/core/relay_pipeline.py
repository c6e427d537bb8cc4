"""The relay's pipeline: claiming, producing and settling batches on several sessions at once.

With several store sessions, while the broker acknowledges batch N, batch N+1 is claimed on
another session and queued behind it in the same producer, and settling runs on a background
thread. Batches still go out in claim order, and what one batch holds back for a document holds
back its later events in the batches behind it (see relay_batches).
"""

from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import TYPE_CHECKING

from cauldron_fabric.core.errors import RetryableError
from cauldron_fabric.core.ports import OutboxStore
from cauldron_fabric.core.relay_batches import Batch, RelayReport, seqs_of

if TYPE_CHECKING:
	from cauldron_fabric.core.relay import Relay

log = logging.getLogger("cauldron_fabric.relay")


class Pipeline:
	"""Keeps a relay's sessions busy: claim, produce, then settle, overlapping the three.

	With one session it works step by step. With two, batch N+1 is claimed and produced while
	the broker acknowledges batch N. With three, settling also moves to a background thread,
	so the database writes of batch N overlap the claim of N+2 and the broker's work on N+1.
	With four or more, claims move to a background thread too: the next batch is read from
	the database while this thread produces the last one and waits for acknowledgements.
	Batches are claimed, produced and concluded in claim order; only their database work
	overlaps.
	"""

	def __init__(self, relay: Relay):
		self.relay = relay
		self.free = list(relay.sessions)
		self.in_flight: deque[Batch] = deque()
		self.settling: deque[tuple[Batch, Future]] = deque()
		self.claiming: tuple[OutboxStore, Future, list[Batch]] | None = None
		sessions = len(relay.sessions)
		self.settler = ThreadPoolExecutor(1, thread_name_prefix="relay-settle") if sessions > 2 else None
		self.claimer = ThreadPoolExecutor(1, thread_name_prefix="relay-claim") if sessions > 3 else None

	@property
	def empty(self) -> bool:
		"""Tells whether no batch is claimed."""
		return not self.in_flight and not self.settling and self.claiming is None

	@property
	def busy(self) -> bool:
		"""Tells whether work is under way (so the relay should not idle)."""
		return not self.empty

	def step(self, accept_new: bool) -> RelayReport | None:
		"""Advances the pipeline by one move; returns a report when a batch was settled."""
		reaped = self._reap(block=False)
		if reaped is not None:
			return reaped
		if self.claimer is not None:
			started, error, drained = self._start_claimed(accept_new)
			if drained and not self.in_flight and not self.settling:
				return RelayReport(error=error)  # nothing to do: let the relay idle or back off
		elif accept_new and self.free and (len(self.relay.sessions) > 1 or not self.in_flight):
			started, error = self._start()
		else:
			started, error = None, None
		if self.in_flight and (started is None or len(self.in_flight) > 1):
			return self._conclude_oldest()
		if started is None and not self.in_flight:
			if self.claiming is not None:
				wait_for([self.claiming[1]], timeout=self.relay.options.publish_timeout)
				return None
			return self._reap(block=True) if self.settling else RelayReport(error=error)
		return None

	def _start(self) -> tuple[Batch | None, str | None]:
		store = self.free.pop(0)
		batch, error = self.relay._guarded(self.relay._start, store, self._unsettled())
		self._started(store, batch)
		return batch, error

	def _start_claimed(self, accept_new: bool) -> tuple[Batch | None, str | None, bool]:
		"""Produces the batch the claim thread has read, then sets the next claim going.

		Returns the batch started, the error of a failed claim, and whether the last claim
		found nothing (or failed); then no new claim starts in this step, so the relay idles
		or backs off instead of polling the database in a loop.
		"""
		batch, error, drained = None, None, False
		if self.claiming is not None and self.claiming[1].done():
			(store, future, ahead), self.claiming = self.claiming, None
			batch, error = self.relay._guarded(self._produce_claimed, store, future, ahead)
			self._started(store, batch)
			drained = batch is None
		if accept_new and not drained and self.claiming is None and self.free and len(self.in_flight) < 2:
			store = self.free.pop(0)
			ahead = self._unsettled()
			future = self.claimer.submit(store.claim, self.relay.options.batch_size, seqs_of(ahead))
			self.claiming = (store, future, ahead)
		return batch, error, drained

	def _produce_claimed(self, store: OutboxStore, future: Future, ahead: list[Batch]) -> Batch | None:
		return self.relay._produce(store, future.result(), ahead)

	def _started(self, store: OutboxStore, batch: Batch | None) -> None:
		if batch is None:
			self.free.insert(0, store)
		else:
			self.in_flight.append(batch)

	def _unsettled(self) -> list[Batch]:
		"""Returns the batches claimed and not yet settled: a new claim must not wait for their rows."""
		return [*self.in_flight, *(batch for batch, _ in self.settling)]

	def _conclude_oldest(self) -> RelayReport | None:
		batch = self.in_flight.popleft()
		settlements, error = self.relay._guarded(self.relay._conclude, batch)
		if settlements is None:
			self.free.append(batch.store)
			return RelayReport(claimed=len(batch.records), error=error)
		if self.settler is not None:
			self.settling.append((batch, self.settler.submit(self.relay._settle, batch, settlements)))
			return None
		report, error = self.relay._guarded(self.relay._settle, batch, settlements)
		self.free.append(batch.store)
		return report or RelayReport(
			claimed=len(batch.records), error=f"settling failed, the batch will be published again: {error}"
		)

	def _reap(self, block: bool) -> RelayReport | None:
		if not self.settling or not (block or self.settling[0][1].done()):
			return None
		batch, future = self.settling.popleft()
		self.free.append(batch.store)
		try:
			return future.result()
		except RetryableError as exc:
			log.warning("settling failed, the batch will be published again: %s", exc)
			return RelayReport(claimed=len(batch.records), error=str(exc))

	def close(self) -> None:
		"""Concludes and settles whatever is still claimed, then stops the background threads."""
		try:
			if self.claiming is not None:
				# Read but never produced: rolling back hands the rows to the next relay untouched.
				(store, future, _ahead), self.claiming = self.claiming, None
				wait_for([future])
				store.release()
				self.free.append(store)
			while self.in_flight:
				self._conclude_oldest()
			while self.settling:
				self._reap(block=True)
		finally:
			for pool in (self.settler, self.claimer):
				if pool is not None:
					pool.shutdown(wait=True)
