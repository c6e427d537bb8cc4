"""Handlers of consumed events: registered by event type pattern, called with a context.

A handler is ``handler(envelope, context)``. Patterns are those of subscriptions (``*`` one word,
``**`` any number of words; see ``core.delivery.matching``). Every handler matching an event runs,
in registration order, inside one unit of work: if one raises, none of their writes count.

A handler answers a request by calling ``context.reply(payload)``; the reply is sent only after
the unit of work commits, so a reply never announces an effect that was rolled back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cauldron_fabric.core.consumer.messages import REPLY_DEADLINE, REPLY_TO, InboundMessage
from cauldron_fabric.core.delivery.matching import SubscriptionIndex, compile_filter
from cauldron_fabric.core.envelope import Envelope, EventData, EventMetadata, new_event_id, utc_now_iso

Handler = Callable[[Envelope, "HandlerContext"], Any]
REPLY_SUFFIX = ".reply"
FAILED_ACTION = "failed"


def reply_type(request_type: str) -> str:
	"""Returns the event type of replies to a request type: ``pricing.quote`` → ``pricing.quote.reply``."""
	return request_type + REPLY_SUFFIX


@dataclass
class HandlerContext:
	"""What a handler gets besides the event: its origin, the attempt, the transaction, replies."""

	envelope: Envelope
	message: InboundMessage
	group: str
	source: str
	transaction: Any = None
	replies: list[Envelope] = field(default_factory=list)

	@property
	def attempt(self) -> int:
		"""Returns the number of this attempt (1 the first time)."""
		return self.message.attempt

	@property
	def is_request(self) -> bool:
		"""Tells whether the event is a request someone waits to get a reply to."""
		return self.message.header(REPLY_TO) is not None

	@property
	def reply_deadline(self) -> float | None:
		"""Returns the epoch seconds after which nobody waits for the reply, if the request says."""
		value = self.message.number(REPLY_DEADLINE)
		return value / 1000 if value is not None else None

	def reply(self, payload: Mapping[str, Any], *, action: str = "replied") -> Envelope:
		"""Queues a reply to the request; it is sent once the unit of work commits."""
		request = self.envelope
		envelope = Envelope(
			id=new_event_id(),
			type=reply_type(request.type),
			source=self.source,
			time=utc_now_iso(),
			data=EventData(request.data.entity, request.data.entity_id, action, dict(payload)),
			metadata=EventMetadata(
				correlation_id=request.metadata.correlation_id,
				causation_id=request.id,
				user_id=request.metadata.user_id,
				tenant_id=request.metadata.tenant_id,
			),
		)
		self.replies.append(envelope)
		return envelope

	def fail(self, error: BaseException) -> Envelope:
		"""Queues a reply telling the requester its request failed, and why."""
		return self.reply({"error": str(error), "errorClass": type(error).__name__}, action=FAILED_ACTION)


class HandlerTable:
	"""Finds the handlers registered for an event type; lookups are cached per type."""

	def __init__(self, entries: Iterable[tuple[str, Handler]] = ()):
		self.entries: list[tuple[str, Handler]] = list(entries)
		self._index = SubscriptionIndex(
			(position, compile_filter([pattern])) for position, (pattern, _) in enumerate(self.entries)
		)
		self._cache: dict[str, tuple[Handler, ...]] = {}
		self._lock = threading.Lock()

	@classmethod
	def from_mapping(cls, mapping: Mapping[str, Handler | Sequence[Handler]]) -> HandlerTable:
		"""Builds a table from ``{pattern: handler or [handlers]}``; raises PatternError for a bad pattern."""
		entries = []
		for pattern, handlers in mapping.items():
			for handler in handlers if isinstance(handlers, list | tuple) else [handlers]:
				entries.append((pattern, handler))
		return cls(entries)

	@property
	def patterns(self) -> list[str]:
		"""Returns the registered patterns, each once, in registration order."""
		return list(dict.fromkeys(pattern for pattern, _ in self.entries))

	def handlers_for(self, event_type: str) -> tuple[Handler, ...]:
		"""Returns the handlers whose pattern matches ``event_type``, in registration order."""
		found = self._cache.get(event_type)
		if found is None:
			positions = self._index.positions_for_type(event_type)
			found = tuple(dict.fromkeys(self.entries[p][1] for p in positions))
			with self._lock:
				self._cache[event_type] = found
		return found

	def __len__(self) -> int:
		return len(self.entries)


def responder(answer: Callable[[Envelope], Mapping[str, Any]]) -> Handler:
	"""Wraps ``answer(request) -> payload`` as a handler that replies with the payload.

	An error becomes a ``failed`` reply at once (the requester is waiting) instead of a retry.
	"""

	def handle(envelope: Envelope, context: HandlerContext) -> None:
		try:
			payload = answer(envelope)
		except Exception as exc:
			context.fail(exc)
			return
		context.reply(payload or {})

	handle.__name__ = getattr(answer, "__name__", "responder")
	return handle
