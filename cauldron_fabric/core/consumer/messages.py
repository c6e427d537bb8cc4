"""What consumers exchange: inbound messages, their origin, failures, dead letters, lag and counts.

Retries and dead letters keep the message as it came (key, body, CloudEvents headers) and add
``fabric-*`` headers saying where it came from and what went wrong:

==========================  =====================================================================
header                      meaning
==========================  =====================================================================
fabric-origin-topic         the topic (Kafka) or routing key (RabbitMQ) the message first came from
fabric-origin-partition     its partition there (0 on RabbitMQ)
fabric-origin-offset        its offset there (the delivery tag on RabbitMQ)
fabric-consumer-group       the consumer group that failed to process it
fabric-attempts             attempts made so far (a retry copy carries the number of its attempt)
fabric-not-before           epoch milliseconds before which a retry copy must not be processed
fabric-exception-class      class of the last error (``module.Class``)
fabric-exception-message    its message
fabric-dead-letter-reason   why it is dead: invalid-envelope, schema-violation, handler-refused,
                            attempts-exhausted, handler-crashed, broker-dead-lettered,
                            reply-address-refused, tracking-refused
==========================  =====================================================================

Request-reply uses ``fabric-reply-to``, ``fabric-reply-partition``, ``fabric-correlation-id`` and
``fabric-reply-deadline`` (epoch milliseconds after which nobody waits for the reply).
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from cauldron_fabric.core.envelope import Envelope

ORIGIN_TOPIC = "fabric-origin-topic"
ORIGIN_PARTITION = "fabric-origin-partition"
ORIGIN_OFFSET = "fabric-origin-offset"
CONSUMER_GROUP = "fabric-consumer-group"
ATTEMPTS = "fabric-attempts"
NOT_BEFORE = "fabric-not-before"
EXCEPTION_CLASS = "fabric-exception-class"
EXCEPTION_MESSAGE = "fabric-exception-message"
DEAD_LETTER_REASON = "fabric-dead-letter-reason"
REPLY_TO = "fabric-reply-to"
# The topic Kafka requesters read replies from unless told otherwise, and responders write to.
DEFAULT_REPLY_TOPIC = "cauldron.replies"
REPLY_PARTITION = "fabric-reply-partition"
CORRELATION_ID = "fabric-correlation-id"
REPLY_DEADLINE = "fabric-reply-deadline"

INVALID_ENVELOPE = "invalid-envelope"
SCHEMA_VIOLATION = "schema-violation"
HANDLER_REFUSED = "handler-refused"
ATTEMPTS_EXHAUSTED = "attempts-exhausted"
HANDLER_CRASHED = "handler-crashed"
BROKER_DEAD_LETTERED = "broker-dead-lettered"
# A request asking for its replies where this consumer may not write them (see reply_addresses.py).
REPLY_ADDRESS_REFUSED = "reply-address-refused"
# The database refused the event's processed mark for good (not an outage): the event itself is
# sound, and a Retry may go through once the cause is fixed.
TRACKING_REFUSED = "tracking-refused"
# The reason RabbitMQ gives (``x-death``) for a message whose TTL ran out in a queue.
EXPIRED_BY_BROKER = "expired"

# Headers a forwarded copy gets afresh; everything else (ce_*, content-type) travels unchanged.
FORWARDING_HEADERS = frozenset(
	{
		ORIGIN_TOPIC,
		ORIGIN_PARTITION,
		ORIGIN_OFFSET,
		CONSUMER_GROUP,
		ATTEMPTS,
		NOT_BEFORE,
		EXCEPTION_CLASS,
		EXCEPTION_MESSAGE,
		DEAD_LETTER_REASON,
	}
)
MESSAGE_LIMIT = 1000


def text(value: Any) -> str | None:
	"""Returns a header value as text (None stays None)."""
	if value is None:
		return None
	return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


@dataclass(frozen=True, slots=True)
class Origin:
	"""Where a message was first consumed from: topic (or routing key), partition and offset."""

	topic: str
	partition: int
	offset: int

	def __str__(self) -> str:
		return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class InboundMessage:
	"""One message as a source delivered it; ``handle`` is what the source needs to acknowledge it."""

	topic: str
	partition: int
	offset: int
	key: bytes | None
	body: bytes
	headers: tuple[tuple[str, Any], ...] = ()
	timestamp_ms: int | None = None
	handle: Any = field(default=None, compare=False, repr=False)
	# Why the broker itself dead-lettered the message (RabbitMQ ``x-death`` reason), if it did.
	broker_death: str | None = None
	# Why the source could not read the message as it came (its headers), if it could not: such
	# a message is a dead letter, whatever its body says.
	unreadable: str | None = None
	# A Kafka record with no value at all (a tombstone), as opposed to an empty one: its body is
	# b"", and its retry or dead-letter copy goes out with no value again, a tombstone still.
	tombstone: bool = False

	def header(self, name: str) -> str | None:
		"""Returns the last value of a header as text, or None."""
		found = None
		for key, value in self.headers:
			if key == name:
				found = value
		return text(found)

	def number(self, name: str) -> float | None:
		"""Returns a header as a number (whole or not), or None when it is missing or not one.

		Requesters other than the fabric's set these headers: one that is no number must not
		stop the consumer (it would meet the same message again after every restart).
		"""
		try:
			value = float(self.header(name) or "nan")
		except ValueError:
			return None
		return value if math.isfinite(value) else None

	@property
	def origin(self) -> Origin:
		"""Returns where the message first came from (a retry copy names its original)."""
		topic = self.header(ORIGIN_TOPIC)
		if topic is None:
			return Origin(self.topic, self.partition, self.offset)
		return Origin(topic, _int(self.header(ORIGIN_PARTITION)), _int(self.header(ORIGIN_OFFSET)))

	@property
	def attempt(self) -> int:
		"""Returns the number of the attempt this delivery is (1 unless it is a retry copy)."""
		return max(1, _int(self.header(ATTEMPTS), 1))

	@property
	def not_before(self) -> float | None:
		"""Returns the epoch seconds before which this retry copy must wait, if any."""
		value = self.header(NOT_BEFORE)
		return _int(value) / 1000 if value else None


@dataclass(frozen=True, slots=True)
class Failure:
	"""Why a message was not processed: a reason code, the error's class and its message."""

	reason: str
	error_class: str
	message: str

	@classmethod
	def of(cls, reason: str, error: BaseException) -> Failure:
		"""Describes an exception under a reason code."""
		kind = type(error)
		return cls(
			reason, f"{kind.__module__}.{kind.__qualname__}", str(error)[:MESSAGE_LIMIT] or kind.__name__
		)


@dataclass(frozen=True, slots=True)
class DeadLetter:
	"""A message a consumer group gave up on, as it was written to the dead letters."""

	group: str
	origin: Origin
	attempts: int
	failure: Failure
	destination: str | None  # None when the broker refused the copy for good (the record keeps it)
	body: bytes
	key: bytes | None = None
	envelope: Envelope | None = None
	broker: str = ""


@dataclass(frozen=True, slots=True)
class PartitionLag:
	"""How far a consumer is behind on one partition (RabbitMQ: a queue as partition 0).

	On RabbitMQ ``lag`` is the queue's ready messages plus ``in_flight``: those the broker
	delivered to this consumer and it has not acknowledged yet (in hand, deferred, prefetched).
	Other consumers' are theirs to report: AMQP tells nobody else.
	"""

	topic: str
	partition: int
	position: int | None
	high_watermark: int | None
	lag: int | None
	in_flight: int | None = None


@dataclass(frozen=True, slots=True)
class ConsumerCounts:
	"""What a consumer did with the messages of one partition (or in total)."""

	processed: int = 0
	failed: int = 0
	retried: int = 0
	dead_lettered: int = 0
	duplicates: int = 0
	ignored: int = 0
	deferred: int = 0  # put back because the database or the broker was unavailable
	expired: int = 0  # requests the broker expired before a responder took them: dropped, logged
	unreplied: int = 0  # requests whose replies no attempt could send: given up, logged

	def __add__(self, other: ConsumerCounts) -> ConsumerCounts:
		return ConsumerCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


COUNT_NAMES = tuple(f.name for f in fields(ConsumerCounts))


class ConsumerStats:
	"""Counts outcomes per partition; read from other threads (status reporters) while it counts."""

	def __init__(self):
		self._counts: dict[tuple[str, int], dict[str, int]] = defaultdict(
			lambda: dict.fromkeys(COUNT_NAMES, 0)
		)
		self._lock = threading.Lock()
		self.started = time.time()

	def count(self, topic: str, partition: int, outcome: str, amount: int = 1) -> None:
		"""Adds ``amount`` to one outcome (a ConsumerCounts field name) of a partition."""
		with self._lock:
			self._counts[(topic, partition)][outcome] += amount

	def per_partition(self) -> dict[tuple[str, int], ConsumerCounts]:
		"""Returns the counts of every partition seen so far."""
		with self._lock:
			return {key: ConsumerCounts(**values) for key, values in self._counts.items()}

	def totals(self) -> ConsumerCounts:
		"""Returns the counts summed over all partitions."""
		total = ConsumerCounts()
		for counts in self.per_partition().values():
			total = total + counts
		return total


def forwarded_headers(
	message: InboundMessage,
	group: str,
	attempts: int,
	failure: Failure,
	*,
	not_before: float | None = None,
	dead: bool = False,
) -> tuple[tuple[str, str], ...]:
	"""Returns the headers of a retry or dead-letter copy: the original ones plus fresh ``fabric-*`` ones."""
	origin = message.origin
	kept = [(name, text(value) or "") for name, value in message.headers if name not in FORWARDING_HEADERS]
	added = [
		(ORIGIN_TOPIC, origin.topic),
		(ORIGIN_PARTITION, str(origin.partition)),
		(ORIGIN_OFFSET, str(origin.offset)),
		(CONSUMER_GROUP, group),
		(ATTEMPTS, str(attempts)),
		(EXCEPTION_CLASS, failure.error_class),
		(EXCEPTION_MESSAGE, failure.message),
	]
	if not_before is not None:
		added.append((NOT_BEFORE, str(int(not_before * 1000))))
	if dead:
		added.append((DEAD_LETTER_REASON, failure.reason))
	return (*kept, *added)


def header_pairs(headers: Iterable[tuple[str, Any]] | dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
	"""Returns headers from a list of pairs or a dict as a tuple of pairs."""
	if not headers:
		return ()
	return tuple(headers.items()) if isinstance(headers, dict) else tuple(headers)


def _int(value: str | None, default: int = 0) -> int:
	try:
		return int(value) if value not in (None, "") else default
	except ValueError:
		return default
