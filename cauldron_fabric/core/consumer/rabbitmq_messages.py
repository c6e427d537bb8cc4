"""AMQP deliveries as the fabric reads them: an ``InboundMessage`` from a message's properties.

The CloudEvents attributes travel as AMQP headers (``cloudEvents_…``, or another producer's
spelling), ``time`` as an AMQP timestamp; the requester's reply address and correlation id as
the message properties ``reply_to`` and ``correlation_id`` unless headers give them; the
entity's key as the ``partitionkey`` extension.

Any service may write the headers: a name that is no UTF-8 is read with replacement characters,
and a timestamp past what a datetime holds as its number of seconds (``read_timestamps_leniently``).
"""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

import pika.data

from cauldron_fabric.core.consumer.messages import CORRELATION_ID, REPLY_TO, InboundMessage, text
from cauldron_fabric.core.envelope import format_time

# content_encoding values under which the body is the bytes themselves (kombu, for one, writes
# the charset there); anything else (gzip, deflate, zstd…) is a compression the fabric does not undo.
PLAIN_ENCODINGS = frozenset({"", "identity", "utf-8", "utf8", "binary", "7bit", "8bit"})
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
		# pika leaves a name that is no UTF-8 as bytes, which no header reader expects.
		name = text(name)
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
	encoding = text(properties.content_encoding or "").strip()
	unreadable = None
	if encoding.lower() not in PLAIN_ENCODINGS:
		# Read as it came, a gzip body was "not valid JSON (can't decode byte 0x8b)", and a
		# plain body labelled gzip was handled: neither says what the producer did.
		unreadable = (
			f"its body is {encoding[:40]!r}-encoded (AMQP content_encoding), which the fabric does not "
			"decode: publish the event uncompressed"
		)
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
		unreadable=unreadable,
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


AMQP_TIMESTAMP = b"T"


def read_timestamps_leniently() -> None:
	"""Makes pika read an AMQP timestamp past what a datetime holds (the year 9999) as its seconds, in text.

	pika turns every timestamp in a message's headers into a datetime while it reads the frame,
	before any fabric code sees the message. One too large for that (any producer may write it,
	in a header the fabric does not even read) raised there: the connection dropped, and the
	message, unacknowledged, came back to drop it again, so nothing in the queue was handled
	any more. As text it is one header among others; as the CloudEvents ``time``, no time.
	"""
	strict = pika.data.decode_value
	if getattr(strict, "lenient", False):
		return

	def decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
		try:
			return strict(encoded, offset)
		except (OverflowError, ValueError, OSError):
			if encoded[offset : offset + 1] != AMQP_TIMESTAMP:
				raise
			(seconds,) = struct.unpack_from(">Q", encoded, offset + 1)
			return str(seconds), offset + 9

	decode_value.lenient = True
	# decode_table and arrays look it up in the module at each value, nested ones included.
	pika.data.decode_value = decode_value


read_timestamps_leniently()
