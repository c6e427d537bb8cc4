"""The relay: moves committed events from the outbox to the broker, in order, at least once.

One cycle claims a batch (row locks keep other relays off it), publishes it, and settles each
record: published, retry later with backoff, or failed for good. A relay killed mid-batch
loses nothing: its locks vanish with its connection and the rows are still Pending.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import FabricError, RetryableError
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
	):
		self.store = store
		self.transport = transport
		self.options = options or RelayOptions()
		self.clock = clock
		self.on_cycle = on_cycle
		self.consecutive_stalls = 0

	def relay_pending_events(self) -> RelayReport:
		"""Runs one cycle: claim a batch, publish it, settle every record."""
		records = self.store.claim(self.options.batch_size)
		if not records:
			return RelayReport()
		try:
			messages, settlements = self._messages_for(records)
			deliveries = self.transport.publish([m for _, m in messages], self.options.publish_timeout)
			settlements += self._settlements(messages, deliveries)
		except BaseException:
			self.store.release()
			raise
		self.store.settle(settlements)
		return self._report(len(records), settlements)

	def _messages_for(self, records: list[OutboxRecord]) -> tuple[list, list[Settlement]]:
		messages: list[tuple[OutboxRecord, OutboundMessage]] = []
		unreadable: list[Settlement] = []
		for record in records:
			try:
				envelope = Envelope.from_json(record.envelope_json)
			except FabricError as exc:
				unreadable.append(
					Settlement(record.seq, False, error=f"Stored event is unreadable: {exc}", permanent=True)
				)
				continue
			topic = topic_for(
				self.options.topic_template, envelope.type, envelope.data.entity, envelope.metadata.tenant_id
			)
			body = record.envelope_json.encode()
			messages.append(
				(record, OutboundMessage(topic, record.partition_key, body, kafka_headers(envelope)))
			)
		return messages, unreadable

	def _settlements(self, messages: list, deliveries: list[Delivery]) -> list[Settlement]:
		"""Turns deliveries into settlements, holding back anything behind a failure of its key."""
		settlements = []
		failed_keys: dict[str, Settlement] = {}
		for (record, message), delivery in zip(messages, deliveries, strict=True):
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
		"""Relays until ``should_stop()`` says so (checked between cycles) or ``max_seconds`` pass."""
		started = time.monotonic()
		while not should_stop():
			if max_seconds is not None and time.monotonic() - started >= max_seconds:
				return
			report = self._cycle()
			if self.on_cycle:
				self.on_cycle(report)
			if report.claimed >= self.options.batch_size and not report.stalled:
				continue
			if report.stalled or (report.error and report.claimed == 0):
				self.consecutive_stalls += 1
				self._sleep(self.options.backoff.delay(self.consecutive_stalls), should_stop)
				continue
			self.consecutive_stalls = 0
			if report.claimed == 0:
				if waker is not None:
					waker.wait(self.options.idle_wait)
				else:
					self._sleep(self.options.idle_wait, should_stop)

	def _cycle(self) -> RelayReport:
		try:
			return self.relay_pending_events()
		except RetryableError as exc:
			log.warning("relay cycle failed, will retry: %s", exc)
			return RelayReport(error=str(exc))

	@staticmethod
	def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
		deadline = time.monotonic() + seconds
		while not should_stop() and time.monotonic() < deadline:
			time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
