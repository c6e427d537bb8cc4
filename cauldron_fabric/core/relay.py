"""The relay: moves committed events from the outbox to the broker, in order, at least once.

One cycle claims a batch (row locks keep other relays off it), hands it to the transport and
settles each record: published, retry later with backoff, or failed for good. A relay killed
mid-batch loses nothing: its locks vanish with its connection and the rows are still Pending.

With two store sessions the relay pipelines: while the broker acknowledges batch N, batch
N+1 is claimed on the other session and queued behind it in the same producer, so database
and broker work overlap. Order holds because N+1 is produced after N on the same producer,
and a key that fails in N holds back its records in N+1.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cauldron_fabric.core.cloudevents import binary_headers, event_attributes
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
		second_store: OutboxStore | None = None,
	):
		self.store = store
		self.sessions = [store, second_store] if second_store is not None else [store]
		self.transport = transport
		self.options = options or RelayOptions()
		self.clock = clock
		self.on_cycle = on_cycle
		self.consecutive_stalls = 0
		self._topics: dict[tuple, str] = {}

	def relay_pending_events(self) -> RelayReport:
		"""Runs one cycle without pipelining: claim a batch, publish it, settle every record."""
		batch = self._start(self.store, None)
		return self._finish(batch) if batch else RelayReport()

	def _start(self, store: OutboxStore, behind: Batch | None) -> Batch | None:
		records = store.claim(self.options.batch_size, behind.seqs if behind else ())
		if not records:
			return None
		try:
			messages = [(record, self._message(record)) for record in records]
			wait = self.transport.publish_async([message for _, message in messages])
		except BaseException:
			store.release()
			raise
		return Batch(store, records, messages, wait, behind)

	def _finish(self, batch: Batch) -> RelayReport:
		try:
			deliveries = batch.wait(self.options.publish_timeout)
			settlements = self._settlements(batch, deliveries)
		except BaseException:
			batch.store.release()
			raise
		batch.behind = None  # the chain ends here; keep memory flat
		batch.store.settle(settlements)
		return self._report(len(batch.records), settlements)

	def _message(self, record: OutboxRecord) -> OutboundMessage:
		# Headers come from the row's columns: the JSON is forwarded untouched, never parsed.
		attributes = event_attributes(
			id=record.event_id,
			type=record.event_type,
			source=record.source,
			time=record.event_time,
			entity=record.entity,
			entity_id=record.entity_id,
			data_schema=record.data_schema,
			correlation_id=record.correlation_id,
			causation_id=record.causation_id,
			user_id=record.user_id,
			tenant_id=record.tenant_id,
		)
		topic = self._topic(record.event_type, record.entity, record.tenant_id)
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

	def run(
		self, should_stop: Callable[[], bool], waker: Waker | None = None, max_seconds: float | None = None
	) -> None:
		"""Relays until ``should_stop()`` says so (checked between cycles) or ``max_seconds`` pass.

		The batch in flight is always settled before returning.
		"""
		started = time.monotonic()
		in_flight: Batch | None = None
		turn = 0
		while True:
			done = should_stop() or (max_seconds is not None and time.monotonic() - started >= max_seconds)
			following, start_error = None, None
			if not done and (in_flight is None or len(self.sessions) > 1):
				turn += 1
				session = self.sessions[turn % len(self.sessions)]
				following, start_error = self._guarded(self._start, session, in_flight)
			if in_flight is not None:
				report, _ = self._guarded(self._finish, in_flight)
				report = report or RelayReport(error="settling failed; the batch will be published again")
			elif following is None:
				report = RelayReport(error=start_error)  # an idle cycle, or a failed claim
			else:
				report = None  # the first batch is on its way; nothing finished yet
			in_flight = following
			if report is not None and self.on_cycle:
				self.on_cycle(report)
			if done and in_flight is None:
				return
			self._pause(report, in_flight, waker, should_stop)

	def _guarded(self, step: Callable, *args):
		try:
			return step(*args), None
		except RetryableError as exc:
			log.warning("relay step failed, will retry: %s", exc)
			return None, str(exc)

	def _pause(
		self, report: RelayReport | None, in_flight: Batch | None, waker: Waker | None, should_stop
	) -> None:
		"""Backs off after failures; waits for a wake-up when there is nothing to do."""
		if report is not None and (report.stalled or (report.error and report.claimed == 0)):
			self.consecutive_stalls += 1
			self._sleep(self.options.backoff.delay(self.consecutive_stalls), should_stop)
			return
		if report is not None and report.published:
			self.consecutive_stalls = 0
		if in_flight is None and (report is None or report.claimed < self.options.batch_size):
			if waker is not None:
				waker.wait(self.options.idle_wait)
			else:
				self._sleep(self.options.idle_wait, should_stop)

	@staticmethod
	def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
		deadline = time.monotonic() + seconds
		while not should_stop() and time.monotonic() < deadline:
			time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
