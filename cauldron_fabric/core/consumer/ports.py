"""Ports of the consumer: where messages come from, where processed events are tracked, circuits.

Adapters: ``kafka.py`` and ``rabbitmq.py`` (sources), ``tracking_memory.py`` and
``tracking_sql.py`` (tracking), ``circuit.py`` and ``circuit_redis.py`` (circuit state). Each port
has one contract suite in ``tests/`` that every adapter passes.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cauldron_fabric.core.consumer.messages import Failure, InboundMessage, PartitionLag
from cauldron_fabric.core.envelope import Envelope


class MessageSource(abc.ABC):
	"""Delivers one consumer group's messages and takes each back once its outcome is safe.

	A message that is neither ``done`` nor ``deferred`` is delivered again after a restart or a
	rebalance: that is what makes a crash lose nothing.
	"""

	broker: str = ""
	group: str = ""

	@abc.abstractmethod
	def poll(self, max_messages: int, timeout: float) -> list[InboundMessage]:
		"""Returns up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first."""

	@abc.abstractmethod
	def is_current(self, message: InboundMessage) -> bool:
		"""Tells whether a polled message may still be handled (not once its partition was deferred)."""

	@abc.abstractmethod
	def done(self, message: InboundMessage) -> None:
		"""Marks a message handled: its offset is committed soon (Kafka) or it is acknowledged (RabbitMQ)."""

	@abc.abstractmethod
	def defer(self, message: InboundMessage, until: float) -> None:
		"""Delivers the message (and, on Kafka, the rest of its partition) again at epoch ``until``.

		Other partitions keep flowing; nothing is acknowledged.
		"""

	@abc.abstractmethod
	def retry_later(self, message: InboundMessage, attempt: int, delay: float, failure: Failure) -> str:
		"""Publishes a copy for attempt number ``attempt`` that arrives after ``delay`` seconds.

		Returns where the copy went (a retry topic or delay queue). Raises TransportUnavailable
		when the broker does not confirm it; the original is then still unacknowledged.
		"""

	@abc.abstractmethod
	def dead_letter(self, message: InboundMessage, failure: Failure, attempts: int) -> str:
		"""Publishes the message with its origin headers to the group's dead letters; returns where.

		Raises TransportUnavailable when the broker does not confirm it.
		"""

	@abc.abstractmethod
	def check_reply_address(self, request: InboundMessage) -> None:
		"""Raises ReplyAddressRefused when the request names a reply address this source may not write to.

		Called before the handlers run, so a refused request has no effect; one without a reply
		address passes.
		"""

	@abc.abstractmethod
	def reply(self, request: InboundMessage, envelope: Envelope) -> None:
		"""Sends ``envelope`` to the requester the request's headers name.

		Raises TransportUnavailable when the broker does not take it, ReplyAddressRefused when
		the address is not allowed.
		"""

	def commit(self) -> None:
		"""Commits what is done so far (Kafka offsets); sources that acknowledge one by one do nothing."""

	@abc.abstractmethod
	def lag(self) -> list[PartitionLag]:
		"""Returns, per assigned partition (or queue), how many messages wait behind the last handled one."""

	@abc.abstractmethod
	def idle(self) -> bool:
		"""Tells whether everything that reached the source is handled and nothing waits to come back."""

	@abc.abstractmethod
	def close(self) -> None:
		"""Commits, leaves the group and disconnects; unhandled messages go to other members."""


class TrackingStore(abc.ABC):
	"""Remembers which events each consumer group processed, in the transaction of the handler's writes.

	One instance is one session (one database connection). ``claim`` writes the mark first, so a
	second consumer handed the same event at the same time (a rebalance) waits for the first
	one's transaction and then sees the event as processed.
	"""

	@property
	@abc.abstractmethod
	def transaction(self) -> Any:
		"""Returns what handlers write through (a DB connection) so their writes share the transaction."""

	@abc.abstractmethod
	def begin(self) -> None:
		"""Starts the unit of work of one event."""

	@abc.abstractmethod
	def claim(self, group: str, envelope: Envelope, message: InboundMessage | None = None) -> bool:
		"""Records the event as processed by ``group`` in the open transaction.

		Returns False (recording nothing) when the group already processed it. Raises a
		RetryableError when the store cannot be reached or the wait for another session timed out.
		"""

	@abc.abstractmethod
	def keep_replies(self, group: str, event_id: str, replies: Sequence[Envelope]) -> None:
		"""Stores the replies to a claimed request with its mark, in the open transaction.

		They commit or vanish with the mark, so a process that dies after the commit and before
		sending them leaves them for the member that gets the redelivered request.
		"""

	@abc.abstractmethod
	def kept_replies(self, group: str, event_id: str) -> list[Envelope]:
		"""Returns the replies committed with the group's mark of the event (outside any unit of work).

		Empty when none were kept (not a request, or a mark written before replies were kept).
		Raises a RetryableError when the store cannot be reached.
		"""

	@abc.abstractmethod
	def commit(self) -> None:
		"""Commits the handler's writes and the mark together."""

	@abc.abstractmethod
	def rollback(self) -> None:
		"""Discards the handler's writes and the mark; never raises."""

	@abc.abstractmethod
	def is_processed(self, group: str, event_id: str) -> bool:
		"""Tells whether ``group`` has committed the event (outside any unit of work)."""

	def close(self) -> None:
		"""Releases the session's connection."""


@dataclass(frozen=True, slots=True)
class CircuitPolicy:
	"""When a circuit opens and for how long: ``failure_threshold`` failures within ``window_seconds``
	open it for ``open_seconds``; then one probe at a time decides. Each may take ``probe_seconds``, or
	its call's timeout when that is longer, before another probe may go."""

	failure_threshold: int = 5
	window_seconds: float = 60.0
	open_seconds: float = 30.0
	probe_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class CircuitState:
	"""The state of one target's circuit: closed, open or half_open, and since when."""

	target: str
	state: str = "closed"
	failures: int = 0
	opened_at: float | None = None
	retry_at: float | None = None
	last_failure_at: float | None = None

	@property
	def closed(self) -> bool:
		"""Tells whether calls go through freely."""
		return self.state == "closed"


class CircuitStore(abc.ABC):
	"""Keeps circuit states where every worker sees them; each operation is atomic."""

	@abc.abstractmethod
	def acquire(self, target: str, now: float, policy: CircuitPolicy) -> tuple[bool, CircuitState]:
		"""Decides whether a call to ``target`` may go now; an open circuit past its time grants one probe."""

	@abc.abstractmethod
	def record_failure(self, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		"""Counts a failure or timeout; opens the circuit at the threshold or when a probe fails."""

	@abc.abstractmethod
	def record_success(self, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		"""Closes a half-open circuit (the probe succeeded); a closed one stays closed."""

	@abc.abstractmethod
	def get(self, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		"""Returns the state of one target (closed when never seen)."""

	@abc.abstractmethod
	def all(self, now: float, policy: CircuitPolicy) -> list[CircuitState]:
		"""Returns the state of every target that has one, sorted by target."""

	@abc.abstractmethod
	def reset(self, target: str) -> None:
		"""Forgets a target's failures and closes its circuit."""


class CrashCounter(abc.ABC):
	"""Counts, per consumer group and event, the handler runs that never came back.

	A handler that kills its process (out of memory, a crash in a C extension, ``os._exit``)
	gets its message again after the restart, and again, and its partition or queue moves no
	further. The count has to outlive the process, so it lives outside it (Redis): a run is
	counted before the handlers start and forgotten when they return, whatever the outcome.
	"""

	@abc.abstractmethod
	def started(self, group: str, event_id: str) -> int:
		"""Counts a run of ``event_id``'s handlers; returns how many earlier runs never returned.

		Answers 0 when the count cannot be read: losing the count must not stop the consumer.
		"""

	@abc.abstractmethod
	def finished(self, group: str, event_id: str) -> None:
		"""Forgets the runs of ``event_id`` (it returned); may wait for the next call to do so."""

	def flush(self) -> None:
		"""Does what ``finished`` left for later."""

	def close(self) -> None:
		"""Releases the connection."""
