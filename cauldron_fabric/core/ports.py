"""Ports: the small interfaces the core is written against, and the values they exchange.

Adapters live in ``transports/`` and ``outbox/``; each port has one contract test suite in
``tests/`` that every adapter passes.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import FabricError


@dataclass(frozen=True, slots=True)
class OutboundMessage:
	"""One message for a transport: where it goes, its ordering key, headers and body."""

	destination: str
	key: str | bytes | None  # bytes or None only from a Kafka consumer's copies: the key as it came
	body: bytes | None  # None only from a Kafka consumer's copy of a tombstone
	headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
	"""The outcome of publishing one message: where it landed, or why it did not."""

	ok: bool
	destination: str
	partition: int | None = None
	offset: int | None = None
	error: FabricError | None = None

	@property
	def retryable(self) -> bool:
		"""Tells whether a failed delivery is worth trying again."""
		return bool(self.error and self.error.retryable)


@dataclass(frozen=True, slots=True)
class ConnectionReport:
	"""What a transport found when asked to check its connection."""

	ok: bool
	summary: str
	details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class OutboxRecord:
	"""One event waiting in the outbox, in commit order (``seq``), as its envelope's JSON.

	The relay takes header fields and the topic from that JSON (one fast parse), which costs
	less than reading a dozen more columns through a pure-Python database driver.
	"""

	seq: int
	partition_key: str
	envelope_json: str
	attempts: int = 0


@dataclass(frozen=True, slots=True)
class Settlement:
	"""What the relay learnt about one outbox record after a publishing attempt."""

	seq: int
	published: bool
	destination: str = ""
	partition: int | None = None
	offset: int | None = None
	error: str | None = None
	permanent: bool = False
	retry_at: dt.datetime | None = None
	# False for a record held back behind an earlier failure of its key without being sent:
	# no attempt to count.
	attempted: bool = True


class Transport(abc.ABC):
	"""Publishes messages to a broker and reports, per message, whether it was acknowledged."""

	scheme: str = ""

	@abc.abstractmethod
	def publish(self, messages: Sequence[OutboundMessage], timeout: float) -> list[Delivery]:
		"""Publishes ``messages`` in order and waits up to ``timeout`` seconds for acknowledgements.

		Returns one Delivery per message, in the same order. Messages with the same key keep
		their relative order on the broker. Never raises for a broker outage: the failed
		deliveries carry a retryable error instead.
		"""

	def publish_async(self, messages: Sequence[OutboundMessage]) -> Callable[[float], list[Delivery]]:
		"""Starts publishing and returns a function that waits for the deliveries.

		Transports that can keep messages in flight override this so the relay overlaps
		database work with the broker's; this default publishes when waited on.
		"""
		return lambda timeout: self.publish(messages, timeout)

	@abc.abstractmethod
	def check(self, timeout: float) -> ConnectionReport:
		"""Connects and reports what it found (brokers, topics) without publishing anything."""

	def close(self) -> None:
		"""Releases connections; the transport is unusable afterwards."""


class OutboxStore(abc.ABC):
	"""The transactional outbox: events appended with the business change, claimed by relays.

	Claiming locks the claimed records until ``settle`` or ``release``, so several relays can
	share one outbox without publishing a record twice. Records of one partition key are
	handed out in ``seq`` order and never past an earlier unsettled record of the same key.
	"""

	@abc.abstractmethod
	def append(self, entries: Sequence[OutboxAppend], actor: str = "Administrator") -> None:
		"""Appends events; in a transactional store, in the caller's current transaction."""

	@abc.abstractmethod
	def claim(self, limit: int, ahead: Collection[int] = ()) -> list[OutboxRecord]:
		"""Locks and returns up to ``limit`` due records, oldest first, safe to publish in order.

		``ahead`` lists records this relay holds in another session and has already handed to
		the transport; records queued behind them keep their order, so they do not block.
		"""

	@abc.abstractmethod
	def settle(self, settlements: Sequence[Settlement]) -> None:
		"""Records the outcome of the claimed records and releases them (commits)."""

	@abc.abstractmethod
	def release(self) -> None:
		"""Gives the claimed records back untouched (rolls back)."""

	@abc.abstractmethod
	def pending_count(self) -> int:
		"""Returns how many records still wait to be published."""

	def close(self) -> None:
		"""Releases the store's connection."""


@dataclass(frozen=True, slots=True)
class OutboxAppend:
	"""An event to append: ``pending`` False records it without publishing it; ``invalid``
	keeps an event that failed its schema, never to be published, and ``problem`` says why."""

	envelope: Envelope
	pending: bool = True
	invalid: bool = False
	problem: str | None = None


class Waker(abc.ABC):
	"""Lets producers wake an idle relay the moment they commit."""

	@abc.abstractmethod
	def wait(self, timeout: float) -> bool:
		"""Blocks until woken or ``timeout`` seconds pass; returns True when woken."""

	@abc.abstractmethod
	def notify(self) -> None:
		"""Wakes every waiting relay; never raises (a missed wake-up only delays to the next poll)."""

	def close(self) -> None:
		"""Releases the connection."""
