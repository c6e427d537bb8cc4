"""The relay: moves committed events from the outbox to the broker, in order, at least once.

One cycle claims a batch (row locks keep other relays off it), hands it to the transport and
settles each record: published, retry later with backoff, or failed for good. A relay killed
mid-batch loses nothing: its locks vanish with its connection and the rows are still Pending.

With several store sessions the relay pipelines (see Pipeline): while the broker acknowledges
batch N, batch N+1 is claimed on another session and queued behind it in the same producer,
and settling runs on a background thread. Order holds because batches are produced in claim
order on one producer, and a key that fails in N holds back its records in N+1.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field

from cauldron_fabric.core.cloudevents import attributes_of, binary_headers
from cauldron_fabric.core.envelope import fast_loads
from cauldron_fabric.core.errors import RetryableError
from cauldron_fabric.core.naming import DEFAULT_TOPIC_TEMPLATE, topic_for
from cauldron_fabric.core.ports import (
	Delivery,
	OutboundMessage,
	OutboxRecord,
	OutboxStore,
	Settlement,
	Transport,
	Waker,
)
from cauldron_fabric.core.retry import Backoff

log = logging.getLogger("cauldron_fabric.relay")


@dataclass(frozen=True, slots=True)
class RelayReport:
	"""What one relay cycle did."""

	claimed: int = 0
	published: int = 0
	retrying: int = 0
	failed: int = 0
	error: str | None = None

	@property
	def stalled(self) -> bool:
		"""Tells whether the cycle published nothing because of a retryable failure."""
		return self.claimed > 0 and self.published == 0 and self.retrying > 0


@dataclass
class RelayOptions:
	"""Tuning of a relay; the defaults suit one relay per site on a small machine."""

	batch_size: int = 500
	publish_timeout: float = 15.0
	idle_wait: float = 1.0
	topic_template: str = DEFAULT_TOPIC_TEMPLATE
	backoff: Backoff = field(default_factory=Backoff)


@dataclass
class Batch:
	"""A claimed batch handed to the transport, waiting for its deliveries."""

	store: OutboxStore
	records: list[OutboxRecord]
	messages: list[tuple[OutboxRecord, OutboundMessage]]
	wait: Callable[[float], list[Delivery]]
	behind: Batch | None = None
	failed_keys: dict[str, Settlement] = field(default_factory=dict)

	@property
	def seqs(self) -> list[int]:
		"""Returns the sequence numbers this batch holds."""
		return [r.seq for r in self.records]


class Relay:
	"""Publishes outbox records through a transport; many relays may share one outbox."""

	def __init__(
		self,
		store: OutboxStore,
		transport: Transport,
		options: RelayOptions | None = None,
		*,
		clock: Callable[[], dt.datetime] = dt.datetime.now,
		on_cycle: Callable[[RelayReport], None] | None = None,
		more_stores: Sequence[OutboxStore] = (),
	):
		self.store = store
		self.sessions = [store, *more_stores]
		self.transport = transport
		self.options = options or RelayOptions()
		self.clock = clock
		self.on_cycle = on_cycle
		self.consecutive_stalls = 0
		self._topics: dict[tuple, str] = {}

	def relay_pending_events(self) -> RelayReport:
		"""Runs one cycle without pipelining: claim a batch, publish it, settle every record."""
		batch = self._start(self.store, None, ())
		if batch is None:
			return RelayReport()
		return self._settle(batch, self._conclude(batch))

	def _start(self, store: OutboxStore, behind: Batch | None, ahead: Collection[int]) -> Batch | None:
		"""Claims a batch on ``store`` and hands it to the transport without waiting."""
		return self._produce(store, store.claim(self.options.batch_size, ahead), behind)

	def _produce(self, store: OutboxStore, records: list[OutboxRecord], behind: Batch | None) -> Batch | None:
		"""Hands claimed records to the transport without waiting; None when there are none."""
		if not records:
			return None
		try:
			messages = [(record, self._message(record)) for record in records]
			wait = self.transport.publish_async([message for _, message in messages])
		except BaseException:
			store.release()
			raise
		return Batch(store, records, messages, wait, behind)

	def _conclude(self, batch: Batch) -> list[Settlement]:
		"""Waits for the batch's deliveries and decides each record's outcome."""
		try:
			deliveries = batch.wait(self.options.publish_timeout)
			settlements = self._settlements(batch, deliveries)
		except BaseException:
			batch.store.release()
			raise
		batch.behind = None  # its failed keys are copied; let the chain go
		return settlements

	def _settle(self, batch: Batch, settlements: list[Settlement]) -> RelayReport:
		"""Writes the outcomes and releases the rows (on the batch's own session)."""
		batch.store.settle(settlements)
		return self._report(len(batch.records), settlements)

	def _message(self, record: OutboxRecord) -> OutboundMessage:
		# The JSON is parsed for headers and topic only; the body goes out byte for byte.
		body = fast_loads(record.envelope_json)
		attributes = attributes_of(body)
		topic = self._topic(body["type"], body["data"]["entity"], attributes.get("tenantid"))
		return OutboundMessage(
			topic, record.partition_key, record.envelope_json.encode(), binary_headers(attributes)
		)

	def _topic(self, event_type: str, entity: str, tenant: str | None) -> str:
		key = (event_type, entity, tenant)
		topic = self._topics.get(key)
		if topic is None:
			topic = self._topics[key] = topic_for(self.options.topic_template, event_type, entity, tenant)
		return topic

	def _settlements(self, batch: Batch, deliveries: list[Delivery]) -> list[Settlement]:
		"""Turns deliveries into settlements, holding back anything behind a failure of its key."""
		settlements = []
		failed_keys = dict(batch.behind.failed_keys) if batch.behind else {}
		for (record, message), delivery in zip(batch.messages, deliveries, strict=True):
			key = record.partition_key
			if key in failed_keys:
				first = failed_keys[key]
				error = (
					f"Held back behind event #{first.seq} of the same document, which failed: {first.error}"
				)
				settlements.append(
					Settlement(record.seq, False, message.destination, error=error, retry_at=first.retry_at)
				)
			elif delivery.ok:
				settlements.append(
					Settlement(record.seq, True, delivery.destination, delivery.partition, delivery.offset)
				)
			else:
				permanent = not delivery.retryable
				retry_at = None if permanent else self._retry_at(record.attempts + 1)
				settlement = Settlement(
					record.seq,
					False,
					message.destination,
					error=str(delivery.error),
					permanent=permanent,
					retry_at=retry_at,
				)
				if not permanent:
					failed_keys[key] = settlement
				settlements.append(settlement)
		batch.failed_keys = failed_keys
		return settlements

	def _retry_at(self, attempt: int) -> dt.datetime:
		return self.clock() + dt.timedelta(seconds=self.options.backoff.delay(attempt))

	@staticmethod
	def _report(claimed: int, settlements: list[Settlement]) -> RelayReport:
		published = sum(1 for s in settlements if s.published)
		failed = sum(1 for s in settlements if s.permanent)
		errors = [s.error for s in settlements if s.error and not s.published]
		return RelayReport(
			claimed, published, len(settlements) - published - failed, failed, errors[0] if errors else None
		)

	def close(self) -> None:
		"""Closes the relay's database sessions and its transport (call after ``run`` returns)."""
		for session in self.sessions:
			session.close()
		self.transport.close()

	def run(
		self, should_stop: Callable[[], bool], waker: Waker | None = None, max_seconds: float | None = None
	) -> None:
		"""Relays until ``should_stop()`` says so (checked between cycles) or ``max_seconds`` pass.

		Every batch claimed is settled before returning.
		"""
		started = time.monotonic()
		pipeline = Pipeline(self)
		try:
			while True:
				done = should_stop() or (
					max_seconds is not None and time.monotonic() - started >= max_seconds
				)
				report = pipeline.step(accept_new=not done)
				if report is not None and self.on_cycle:
					self.on_cycle(report)
				if done and pipeline.empty:
					return
				self._pause(report, pipeline.busy, waker, should_stop)
		finally:
			pipeline.close()

	def _guarded(self, step: Callable, *args):
		"""Runs a step; a retryable failure becomes an error text instead of an exception."""
		try:
			return step(*args), None
		except RetryableError as exc:
			log.warning("relay step failed, will retry: %s", exc)
			return None, str(exc)

	def _pause(self, report: RelayReport | None, busy: bool, waker: Waker | None, should_stop) -> None:
		"""Backs off after failures; waits for a wake-up when there is nothing to do."""
		if report is not None and (report.stalled or (report.error and report.claimed == 0)):
			self.consecutive_stalls += 1
			self._sleep(self.options.backoff.delay(self.consecutive_stalls), should_stop)
			return
		if report is not None and report.published:
			self.consecutive_stalls = 0
		if not busy and (report is None or report.claimed < self.options.batch_size):
			if waker is not None:
				waker.wait(self.options.idle_wait)
			else:
				self._sleep(self.options.idle_wait, should_stop)

	@staticmethod
	def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
		deadline = time.monotonic() + seconds
		while not should_stop() and time.monotonic() < deadline:
			time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


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
		self.claiming: tuple[OutboxStore, Future] | None = None
		self.last: Batch | None = None
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
		batch, error = self.relay._guarded(self.relay._start, store, self.last, self._ahead())
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
			(store, future), self.claiming = self.claiming, None
			batch, error = self.relay._guarded(self._produce_claimed, store, future)
			self._started(store, batch)
			drained = batch is None
		if accept_new and not drained and self.claiming is None and self.free and len(self.in_flight) < 2:
			store = self.free.pop(0)
			future = self.claimer.submit(store.claim, self.relay.options.batch_size, self._ahead())
			self.claiming = (store, future)
		return batch, error, drained

	def _produce_claimed(self, store: OutboxStore, future: Future) -> Batch | None:
		return self.relay._produce(store, future.result(), self.last)

	def _started(self, store: OutboxStore, batch: Batch | None) -> None:
		if batch is None:
			self.free.insert(0, store)
		else:
			self.in_flight.append(batch)
			self.last = batch

	def _ahead(self) -> list[int]:
		"""Returns the rows claimed and not yet settled, which a new claim must not wait for."""
		return [seq for batch in (*self.in_flight, *(b for b, _ in self.settling)) for seq in batch.seqs]

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
				(store, future), self.claiming = self.claiming, None
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
