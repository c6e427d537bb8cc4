"""The relay: moves committed events from the outbox to the broker, in order, at least once.

One cycle claims a batch (row locks keep other relays off it), hands it to the transport and
settles each record: published, retry later with backoff, or failed for good. A relay killed
mid-batch loses nothing: its locks vanish with its connection and the rows are still Pending.

With several store sessions the relay pipelines (see Pipeline): while the broker acknowledges
batch N, batch N+1 is claimed on another session and queued behind it in the same producer,
and settling runs on a background thread. Order holds because batches are produced in claim
order on one producer, a key still in the producer for an earlier batch is produced for a later
one only once the earlier batch has its acknowledgements, and a key that failed is held back in
every batch claimed while its failure was unsettled (later claims see the failed row Pending
and skip the key).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field

from cauldron_fabric.core.cloudevents import kafka_headers
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
		"""Tells whether the cycle published nothing because of a retryable failure.

		That includes a batch claimed and then neither concluded nor settled: its rows are
		Pending again and, without a backoff, would be claimed and published again at once.
		"""
		unsettled = self.error is not None and self.retrying == self.failed == 0
		return self.claimed > 0 and self.published == 0 and (self.retrying > 0 or unsettled)


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
	# The batches still unsettled when this one was claimed: it may hold later events of their keys.
	ahead: list[Batch] = field(default_factory=list)
	# Messages of keys that a batch ahead still had in the producer: produced once it concluded.
	deferred: list[tuple[OutboxRecord, OutboundMessage]] = field(default_factory=list)
	# This batch's rows that did not go out (failed, or held back): seq -> (key, the failure).
	unpublished: dict[int, tuple[str, Settlement]] = field(default_factory=dict)
	concluded: bool = False

	@property
	def seqs(self) -> list[int]:
		"""Returns the sequence numbers this batch holds."""
		return [r.seq for r in self.records]


def blocked_keys(ahead: list[Batch], records: list[OutboxRecord]) -> dict[str, tuple[int, Settlement]]:
	"""Returns, per key, the earliest row the concluded batches ahead did not get out, and why.

	A later row of such a key must wait. Rows retried in ``records`` themselves do not block
	them (they go out first, in order); batches settled before the claim do not count (their
	rows are Pending again, and a claim skips the keys they belong to).
	"""
	mine = {record.seq for record in records}
	blocked: dict[str, tuple[int, Settlement]] = {}
	for earlier in ahead:
		for seq, (key, first) in earlier.unpublished.items():
			if seq not in mine and (key not in blocked or seq < blocked[key][0]):
				blocked[key] = (seq, first)
	return blocked


def waits_behind(blocked: dict[str, tuple[int, Settlement]], record: OutboxRecord) -> Settlement | None:
	"""Returns the failure a record must wait behind (see blocked_keys), or None."""
	entry = blocked.get(record.partition_key)
	return entry[1] if entry is not None and record.seq > entry[0] else None


def seqs_of(batches: list[Batch]) -> list[int]:
	"""Returns the sequence numbers the batches hold."""
	return [seq for batch in batches for seq in batch.seqs]


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
		batch = self._start(self.store, [])
		if batch is None:
			return RelayReport()
		return self._settle(batch, self._conclude(batch))

	def _start(self, store: OutboxStore, ahead: list[Batch]) -> Batch | None:
		"""Claims a batch on ``store`` (past the ``ahead`` batches' rows) and hands it to the transport."""
		return self._produce(store, store.claim(self.options.batch_size, seqs_of(ahead)), ahead)

	def _produce(self, store: OutboxStore, records: list[OutboxRecord], ahead: list[Batch]) -> Batch | None:
		"""Hands claimed records to the transport without waiting; None when there are none."""
		if not records:
			return None
		try:
			# A key still in the producer for a batch ahead waits for that batch's outcome: were
			# its messages produced now and the earlier ones failed (a broker back between the
			# two), they would land first. A key that already failed ahead is not produced.
			unconcluded = {r.partition_key for b in ahead if not b.concluded for r in b.records}
			blocked = blocked_keys(ahead, records)
			now, deferred = [], []
			for record in records:
				if waits_behind(blocked, record):
					continue  # held back when settled
				pair = (record, self._message(record))
				(deferred if record.partition_key in unconcluded else now).append(pair)
			wait = self.transport.publish_async([message for _, message in now])
		except BaseException:
			store.release()
			raise
		return Batch(store, records, now, wait, ahead, deferred)

	def _conclude(self, batch: Batch) -> list[Settlement]:
		"""Waits for the batch's deliveries and decides each record's outcome."""
		try:
			deliveries = batch.wait(self.options.publish_timeout)
			# Every batch ahead has concluded now: what their keys hold back is final.
			blocked = blocked_keys(batch.ahead, batch.records)
			if batch.deferred:
				deliveries = deliveries + self._publish_deferred(batch, blocked)
			settlements = self._settlements(batch, deliveries, blocked)
		except BaseException as exc:
			self._give_up(batch, exc)
			raise
		batch.ahead, batch.deferred, batch.concluded = [], [], True  # let the batches ahead go
		return settlements

	@staticmethod
	def _give_up(batch: Batch, exc: BaseException) -> None:
		"""Releases a batch whose outcome is unknown and concludes it with every row unpublished.

		Its rows are Pending again and go out anew, so the batches claimed behind it must hold
		back the later events of its documents: produced now, they would land first.
		"""
		batch.store.release()
		error = f"its batch could not be concluded: {exc}"
		batch.unpublished = {
			record.seq: (record.partition_key, Settlement(record.seq, False, error=error))
			for record in batch.records
		}
		batch.ahead, batch.deferred, batch.concluded = [], [], True

	def _publish_deferred(self, batch: Batch, blocked: dict[str, tuple[int, Settlement]]) -> list[Delivery]:
		"""Produces the deferred messages whose key went out ahead; waits for their deliveries."""
		go = [(r, m) for r, m in batch.deferred if not waits_behind(blocked, r)]
		deliveries = self.transport.publish_async([message for _, message in go])(
			self.options.publish_timeout
		)
		batch.messages = batch.messages + go
		return deliveries

	def _settle(self, batch: Batch, settlements: list[Settlement]) -> RelayReport:
		"""Writes the outcomes and releases the rows (on the batch's own session)."""
		batch.store.settle(settlements)
		return self._report(len(batch.records), settlements)

	def _message(self, record: OutboxRecord) -> OutboundMessage:
		# The JSON is parsed for headers and topic only; the body goes out byte for byte.
		body = fast_loads(record.envelope_json)
		topic = self._topic(
			body["type"], body["data"]["entity"], (body.get("metadata") or {}).get("tenantId")
		)
		return OutboundMessage(
			topic, record.partition_key, record.envelope_json.encode(), kafka_headers(body)
		)

	def _topic(self, event_type: str, entity: str, tenant: str | None) -> str:
		key = (event_type, entity, tenant)
		topic = self._topics.get(key)
		if topic is None:
			topic = self._topics[key] = topic_for(self.options.topic_template, event_type, entity, tenant)
		return topic

	def _settlements(
		self, batch: Batch, deliveries: list[Delivery], blocked: dict[str, tuple[int, Settlement]]
	) -> list[Settlement]:
		"""Turns deliveries into settlements, holding back anything behind a failure of its key.

		``blocked`` (blocked_keys) names the earlier rows of a key that the batches ahead did
		not get out: later ones wait (and were not produced).
		"""
		settlements = []
		failed: dict[str, Settlement] = {}
		unpublished: dict[int, tuple[str, Settlement]] = {}
		produced = {
			record.seq: (message, delivery)
			for (record, message), delivery in zip(batch.messages, deliveries, strict=True)
		}
		for record in batch.records:
			key = record.partition_key
			message, delivery = produced.get(record.seq, (None, None))
			first = failed.get(key) or waits_behind(blocked, record)
			if first is not None:
				unpublished[record.seq] = (key, first)
				error = (
					f"Held back behind event #{first.seq} of the same document, which failed: {first.error}"
				)
				settlements.append(
					Settlement(
						record.seq,
						False,
						message.destination if message else "",  # unsent: the row keeps its topic
						error=error,
						retry_at=first.retry_at,
						attempted=message is not None,
					)
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
					failed[key] = settlement
					unpublished[record.seq] = (key, settlement)
				settlements.append(settlement)
		batch.unpublished = unpublished
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
