"""The relay: moves committed events from the outbox to the broker, in order, at least once.

One cycle claims a batch (row locks keep other relays off it), hands it to the transport and
settles each record: published, retry later with backoff, or failed for good. A relay killed
mid-batch loses nothing: its locks vanish with its connection and the rows are still Pending.

With several store sessions the relay pipelines batches (relay_pipeline.Pipeline); how each
document's events stay in order across the batches in flight is told in relay_batches.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
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
from cauldron_fabric.core.relay_batches import Batch, RelayReport, blocked_keys, seqs_of, waits_behind
from cauldron_fabric.core.relay_pipeline import Pipeline
from cauldron_fabric.core.retry import Backoff

log = logging.getLogger("cauldron_fabric.relay")


@dataclass
class RelayOptions:
	"""Tuning of a relay; the defaults suit one relay per site on a small machine."""

	batch_size: int = 500
	publish_timeout: float = 15.0
	idle_wait: float = 1.0
	topic_template: str = DEFAULT_TOPIC_TEMPLATE
	backoff: Backoff = field(default_factory=Backoff)


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
			now, deferred, unreadable = [], [], {}
			for record in records:
				if waits_behind(blocked, record):
					continue  # held back when settled
				try:
					pair = (record, self._message(record))
				except Exception as exc:
					unreadable[record.seq] = self._unreadable(record, exc)
					continue
				(deferred if record.partition_key in unconcluded else now).append(pair)
			wait = self.transport.publish_async([message for _, message in now])
		except BaseException:
			store.release()
			raise
		return Batch(store, records, now, wait, ahead, deferred, unreadable=unreadable)

	@staticmethod
	def _unreadable(record: OutboxRecord, exc: Exception) -> Settlement:
		"""Fails for good a row whose envelope JSON yields no message (written around the Envelope).

		A row written by raw SQL or a broken migration (no JSON, no object, a field missing or
		of another type) fails again on every retry; raised, it stopped the relay on every
		start, and every event behind it waited.
		"""
		error = (
			f"The envelope of event #{record.seq} in the Event Log cannot be read, so it cannot be "
			f"published ({type(exc).__name__}: {str(exc)[:200]}). Correct its JSON to the envelope "
			"structure (id, type, source, time, data, metadata), then retry the event."
		)
		return Settlement(record.seq, False, error=error, permanent=True)

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
			if record.seq in batch.unreadable:
				settlements.append(batch.unreadable[record.seq])
			elif first is not None:
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
