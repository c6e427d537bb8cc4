"""Request-reply over the bus: a request is an event, its reply another event, linked by id.

``request(type, data, timeout)`` publishes a request envelope to the target (a Kafka topic, or a
routing key on the RabbitMQ exchange) and waits for the reply. The correlation id of the
exchange is the request event's id: the reply carries it in ``fabric-correlation-id`` (Kafka) or
the AMQP ``correlation_id`` property, and as its ``causationId``. The envelopes keep the
conversation's ``correlationId``.

Responders are ordinary consumers (``handlers.responder``): several processes in one consumer
group share the requests, so the group load-balances them. A circuit breaker per target stops
calling a responder that keeps failing or timing out.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cauldron_fabric.core.consumer.circuit import CircuitBreaker
from cauldron_fabric.core.consumer.handlers import FAILED_ACTION
from cauldron_fabric.core.envelope import Envelope, EventData, EventMetadata, new_event_id, utc_now_iso
from cauldron_fabric.core.errors import ConfigurationError, FabricError, PermanentError, RetryableError
from cauldron_fabric.core.naming import DEFAULT_TOPIC_TEMPLATE, topic_for

# A request may outlast its timeout by the time taken to publish it: its probe slot covers that too.
PROBE_MARGIN = 1.0


class RequestTimeout(RetryableError):
	"""No reply arrived within the timeout."""


class ResponderFailed(PermanentError):
	"""The responder answered that it could not serve the request."""

	def __init__(self, message: str, reply: Envelope):
		self.reply = reply
		super().__init__(message, hint="See the reply's payload for the responder's error.")


@dataclass(frozen=True, slots=True)
class Reply:
	"""The answer to a request, with the round trip's duration."""

	request: Envelope
	envelope: Envelope
	elapsed: float

	@property
	def payload(self) -> Mapping[str, Any]:
		"""Returns the reply's payload."""
		return self.envelope.data.payload


class Requester(abc.ABC):
	"""Sends requests and waits for their replies, through a circuit breaker per target."""

	broker: str = ""

	def __init__(
		self,
		*,
		source: str,
		breaker: CircuitBreaker | None = None,
		default_timeout: float = 10.0,
		topic_template: str = DEFAULT_TOPIC_TEMPLATE,
	):
		self.source = source
		self.breaker = breaker
		self.default_timeout = default_timeout
		self.topic_template = topic_template

	def target_for(self, event_type: str) -> str:
		"""Returns where requests of a type go by default (Kafka: the topic naming rule)."""
		return topic_for(self.topic_template, event_type, "request", None)

	def build_request(
		self,
		event_type: str,
		data: Mapping[str, Any],
		*,
		entity: str = "Request",
		entity_id: str | None = None,
		correlation_id: str | None = None,
		user_id: str | None = None,
		tenant_id: str | None = None,
	) -> Envelope:
		"""Builds the request envelope; its id becomes the exchange's correlation id."""
		request_id = new_event_id()
		return Envelope.from_dict(
			Envelope(
				id=request_id,
				type=event_type,
				source=self.source,
				time=utc_now_iso(),
				data=EventData(entity, entity_id or request_id, event_type.rsplit(".", 1)[-1], dict(data)),
				metadata=EventMetadata(correlation_id or request_id, None, user_id, tenant_id),
			).to_dict()
		)

	def request(
		self,
		event_type: str,
		data: Mapping[str, Any] | None = None,
		timeout: float | None = None,
		*,
		target: str | None = None,
		**envelope_fields: Any,
	) -> Reply:
		"""Sends a request and returns its reply.

		Raises CircuitOpen at once while the target's circuit is open, RequestTimeout when no reply
		comes within ``timeout`` seconds, ResponderFailed when the responder answered with a failure.
		"""
		timeout = self.default_timeout if timeout is None else float(timeout)
		if timeout <= 0:
			raise ConfigurationError(f"A request timeout must be positive, got {timeout!r}.")
		target = target or self.target_for(event_type)
		self.check_target(target)
		request = self.build_request(event_type, data or {}, **envelope_fields)
		admitted = (
			self.breaker.before(target, hold=timeout + PROBE_MARGIN) if self.breaker is not None else None
		)
		started = time.monotonic()
		try:
			envelope = self.exchange(request, target, timeout)
		except BaseException as exc:
			if self.breaker is not None:
				self.breaker.raised(target, admitted, exc, FabricError)
			raise
		reply = Reply(request, envelope, time.monotonic() - started)
		if envelope.data.action == FAILED_ACTION:
			if self.breaker is not None:
				self.breaker.failed(target)
			error = envelope.data.payload.get("error") or "no reason given"
			raise ResponderFailed(f"The responder to {event_type!r} at {target!r} failed: {error}.", envelope)
		if self.breaker is not None:
			self.breaker.succeeded(target)
		return reply

	def check_target(self, target: str) -> None:
		"""Raises ConfigurationError for a target no responder can answer on (before the circuit)."""

	@abc.abstractmethod
	def exchange(self, request: Envelope, target: str, timeout: float) -> Envelope:
		"""Publishes the request and returns the reply envelope; raises RequestTimeout or TransportUnavailable."""

	def close(self) -> None:
		"""Releases the requester's connections."""


def timeout_error(request: Envelope, target: str, timeout: float, broker: str) -> RequestTimeout:
	"""Returns the error for a request nobody answered in time, saying what to check."""
	return RequestTimeout(
		f"No reply to {request.type!r} (correlation id {request.id}) from {target!r} within {timeout:g} s.",
		hint=f"Check that a responder group consumes {target!r} on {broker} and keeps up; "
		"repeated timeouts open the target's circuit.",
	)
