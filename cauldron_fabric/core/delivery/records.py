"""Values of the delivery capability: what is queued, what a worker claims, what one attempt did.

A delivery is one event for one subscription. It is tracked as one row (status ``Pending``,
``Delivered``, ``Dead`` or ``Discarded``) whose attempts are recorded as DeliveryAttempt values;
a ``Dead`` row is a dead letter, kept with the event and every attempt's error.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cauldron_fabric.core.envelope import Envelope

# Row statuses.
PENDING = "Pending"
DELIVERED = "Delivered"
DEAD = "Dead"
DISCARDED = "Discarded"
# Attempt statuses: an attempt that failed but will be retried is "Retrying"; "Deferred" is no
# attempt at all (rate limit reached), only a later time.
RETRYING = "Retrying"
DEFERRED = "Deferred"
ROW_STATUS = {DELIVERED: DELIVERED, RETRYING: PENDING, DEFERRED: PENDING, DEAD: DEAD}
GONE = 410  # a webhook receiver's answer that disables its subscription
HISTORY_LIMIT = 25
EXCERPT_LIMIT = 1000
HIDDEN = "[hidden]"  # a subscription's secret value that a receiver's answer repeated
# Fixed for ever: a delivery's id is derived from it (delivery_id), and receivers remember ids.
DELIVERY_ID_NAMESPACE = uuid.UUID("5d0c2f7e-8f3a-4c1b-9a57-2b6e4d8c1f90")


def delivery_id(event_id: str, subscription: str) -> str:
	"""Returns the id of one event's delivery to one subscription (a webhook's ``webhook-id``).

	Standard Webhooks receivers drop a message whose id they have seen, so the id is the same on
	every attempt of a delivery (a retry is a duplicate to drop) and differs between the
	subscriptions of one event (two subscriptions to one receiver are two messages). The event
	id travels beside it (the CloudEvents ``id``).
	"""
	return "msg_" + uuid.uuid5(DELIVERY_ID_NAMESPACE, f"{subscription}\0{event_id}").hex


@dataclass(frozen=True, slots=True)
class Outcome:
	"""What a destination reported for one send: success, or an error and whether to retry."""

	ok: bool
	retryable: bool = False
	error: str | None = None
	status_code: int | None = None
	latency_ms: float | None = None
	response_excerpt: str | None = None
	retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRequest:
	"""An event to deliver to one subscription.

	``ordering_key`` (the entity's partition key) is set when the subscription keeps each
	entity's order: deliveries of one subscription with the same key then go one at a time.
	"""

	subscription: str
	envelope: Envelope
	ordering_key: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryJob:
	"""A claimed delivery: the event, its subscription and what was tried so far."""

	seq: int
	subscription: str
	event_id: str
	envelope_json: str
	attempts: int = 0
	ordering_key: str | None = None
	history: tuple[Mapping[str, Any], ...] = ()

	@property
	def delivery_id(self) -> str:
		"""Returns the id of this delivery, the same on every attempt (see ``delivery_id``)."""
		return delivery_id(self.event_id, self.subscription)

	def envelope(self) -> Envelope:
		"""Parses the stored event (raises InvalidEnvelope when it is unreadable)."""
		return Envelope.from_json(self.envelope_json)


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
	"""The record of one attempt (or deferral) and the decision taken after it."""

	seq: int
	subscription: str
	event_id: str
	attempt: int
	status: str
	started_at: dt.datetime
	destination: str = ""
	latency_ms: float | None = None
	status_code: int | None = None
	error: str | None = None
	response_excerpt: str | None = None
	next_attempt_at: dt.datetime | None = None

	@property
	def row_status(self) -> str:
		"""Returns the delivery row's status after this attempt."""
		return ROW_STATUS[self.status]

	@property
	def gone(self) -> bool:
		"""Tells whether the receiver answered 410 Gone: the subscription is to be disabled."""
		return self.status == DEAD and self.status_code == GONE

	@property
	def counts(self) -> bool:
		"""Tells whether this was a real attempt (a deferral is not)."""
		return self.status != DEFERRED

	def summary(self) -> dict[str, Any]:
		"""Returns the compact JSON-ready form kept in the delivery's attempt history."""
		entry = {
			"attempt": self.attempt,
			"status": self.status,
			"at": self.started_at.isoformat(timespec="milliseconds"),
			"latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
			"status_code": self.status_code,
			"error": self.error,
			"response": self.response_excerpt,
		}
		if self.next_attempt_at is not None:
			entry["next_attempt_at"] = self.next_attempt_at.isoformat(timespec="milliseconds")
		return {k: v for k, v in entry.items() if v is not None}


@dataclass(frozen=True, slots=True)
class DeliveryRow:
	"""A delivery as stored: its state and the history of its attempts, for inspection."""

	seq: int
	subscription: str
	event_id: str
	status: str
	attempts: int
	ordering_key: str | None = None
	next_attempt_at: dt.datetime | None = None
	last_error: str | None = None
	last_status_code: int | None = None
	last_latency_ms: float | None = None
	delivered_at: dt.datetime | None = None
	history: tuple[Mapping[str, Any], ...] = ()


def excerpt(text: str | bytes | None, limit: int = EXCERPT_LIMIT, hiding: Sequence[str] = ()) -> str | None:
	"""Returns at most ``limit`` characters of a response or error, marking the cut, with each of
	``hiding`` replaced by [hidden] first (so no cut leaves part of one)."""
	if text is None:
		return None
	if isinstance(text, bytes):
		text = text.decode("utf-8", "replace")
	text = without(text, hiding)
	return text if len(text) <= limit else text[:limit] + "…"


def without(text: str, hiding: Sequence[str]) -> str:
	"""Returns ``text`` with each of ``hiding`` replaced by [hidden], the longest first."""
	for value in sorted({v for v in hiding if v}, key=len, reverse=True):
		text = text.replace(value, HIDDEN)
	return text
