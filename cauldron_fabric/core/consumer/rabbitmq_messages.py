"""AMQP deliveries as the fabric reads them: an ``InboundMessage`` from a message's properties.

The CloudEvents attributes travel as AMQP headers (``cloudEvents_…``, or another producer's
spelling), ``time`` as an AMQP timestamp; the requester's reply address and correlation id as
the message properties ``reply_to`` and ``correlation_id`` unless headers give them; the
entity's key as the ``partitionkey`` extension.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cauldron_fabric.core.consumer.messages import CORRELATION_ID, REPLY_TO, InboundMessage, text
from cauldron_fabric.core.envelope import format_time

PARTITION_KEY_HEADERS = ("cloudEvents_partitionkey", "ce-partitionkey", "ce_partitionkey")
TIME_HEADERS = ("cloudevents_time", "cloudevents:time", "ce-time", "ce_time")


def inbound_message(
	topic: str, method, properties, body: bytes, generation: int, broker_death: str | None = None
) -> InboundMessage:
	"""Returns a delivery as an ``InboundMessage`` handled by ``(generation, delivery tag)``.

	``generation`` counts the source's connections: a delivery tag means something only on the
	connection that delivered it.
	"""
	headers: list[tuple[str, Any]] = []
	for name, value in (properties.headers or {}).items():
		value = amqp_header(name, value)
		if isinstance(value, str | bytes | int | float):
			headers.append((name, text(value)))
	if properties.content_type:
		headers.append(("content-type", properties.content_type))
	if properties.reply_to and not (properties.headers or {}).get(REPLY_TO):
		headers.append((REPLY_TO, properties.reply_to))
	if properties.correlation_id and not (properties.headers or {}).get(CORRELATION_ID):
		headers.append((CORRELATION_ID, properties.correlation_id))
	key = next((text(v) for k, v in headers if k in PARTITION_KEY_HEADERS), None)
	return InboundMessage(
		topic,
		0,
		method.delivery_tag,
		key.encode() if key else None,
		body or b"",
		tuple(headers),
		(properties.timestamp or 0) * 1000 or None,
		handle=(generation, method.delivery_tag),
		broker_death=broker_death,
	)


def amqp_header(name: str, value: Any) -> Any:
	"""Returns an AMQP header's value as the fabric reads it: the CloudEvents ``time`` as ISO-8601
	text, anything else as it came.

	The AMQP binding carries ``time`` as an AMQP timestamp: a timestamp field (pika reads a
	datetime) or, as the official SDK's ``to_binary`` writes it, milliseconds since the epoch.
	As digits it would be no ISO-8601 time, and a datetime is no header text: either way every
	such event (or reply) of another producer would be a dead letter (or dropped).
	"""
	if name.lower() not in TIME_HEADERS or not isinstance(value, int | dt.datetime):
		return value
	if isinstance(value, int):
		try:
			value = dt.datetime.fromtimestamp(value / 1000, dt.timezone.utc)
		except (OverflowError, ValueError, OSError):
			# No calendar date (microseconds, nanoseconds): left as it came for the envelope
			# reader to judge; raised here, it stopped every consumer the message was handed to.
			return value
	return format_time(value)
