"""What a RabbitMQ consumer publishes: retry copies, dead letters and replies, confirmed in time.

Retry copies, dead letters and replies are published with publisher confirms. A broker that stops
answering (a hung node, a network partition that keeps the socket open) never confirms: after
``confirm_timeout`` seconds (option, default 15, as long as the Kafka source waits for its
copies) the connection is dropped as lost, so the original stays unacknowledged and is
delivered again, instead of the consumer waiting until the heartbeat gives up, minutes later.

Replies go through the default exchange, which reaches any queue by name: they go only to
direct reply-to (``amq.rabbitmq.reply-to…``) and to queues the option
``allowed_reply_addresses`` lists (patterns, ``*`` any characters); a request naming another
queue is refused before its handlers run (see ``reply_addresses.py``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pika
import pika.exceptions

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.consumer.messages import CORRELATION_ID, InboundMessage
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.transports.amqp import PERSISTENT

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
CONFIRM_TIMEOUT = 15.0  # seconds; the Kafka source's wait for its copies (kafka.PUBLISH_TIMEOUT)


class ConfirmTimeout(pika.exceptions.AMQPConnectionError):
	"""The broker did not confirm a publish in time; the connection is dropped as lost."""


def copy_properties(headers: Sequence[tuple[str, str]]) -> pika.BasicProperties:
	"""Returns the properties of a retry or dead-letter copy: its headers, persistent, stamped now."""
	return pika.BasicProperties(
		headers={k: v for k, v in headers if k != "content-type"},
		content_type=next((v for k, v in headers if k == "content-type"), None),
		delivery_mode=PERSISTENT,
		timestamp=int(time.time()),
	)


SHORT_STRING_BYTES = 255


def reply_properties(request: InboundMessage, envelope: Envelope) -> pika.BasicProperties:
	"""Returns the properties of a reply: its CloudEvents headers and the request's correlation id."""
	headers = {
		f"cloudEvents_{name[3:]}": value for name, value in kafka_headers(envelope) if name.startswith("ce_")
	}
	correlation = request.header(CORRELATION_ID) or envelope.metadata.causation_id
	if correlation and len(correlation.encode()) > SHORT_STRING_BYTES:
		# AMQP's correlation_id holds 255 bytes. pika refused a longer one at publish, which the
		# reply took for a lost connection: it dropped the connection at every attempt and the
		# reply was given up. The requester's id travels in the header it came in instead.
		headers[CORRELATION_ID] = correlation
		correlation = None
	return pika.BasicProperties(
		headers=headers,
		content_type="application/json",
		correlation_id=correlation,
		message_id=envelope.id,
		type=envelope.type,
	)


def reply_is_mandatory(reply_to: str) -> bool:
	"""Tells whether a reply must be returned when no queue takes it: to any named queue, yes.

	A named reply queue that does not exist (yet) returns the reply, which then goes again:
	unnoticed, it would be dropped. Direct reply-to is not mandatory: RabbitMQ before 3.12
	returns such replies even while their requester waits, and one gone is not coming back.
	"""
	return not reply_to.startswith(DIRECT_REPLY_TO)


def publish_within_timeout(
	connection: pika.BlockingConnection,
	channel,
	address: tuple[str, str],
	body: bytes,
	properties: pika.BasicProperties,
	mandatory: bool,
	timeout: float,
) -> None:
	"""Publishes to ``(exchange, routing key)`` and waits for the confirm; raises ConfirmTimeout
	once ``timeout`` seconds pass.

	pika's blocking publish waits for the confirm with no bound but the heartbeat's. A timer
	on the I/O loop it runs aborts the connection the way pika's own heartbeat check does
	(``_terminate_stream``; a graceful close would wait for the same silent broker), and
	the publish then raises the timer's error.
	"""
	exchange, routing_key = address
	loop_connection = connection._impl  # the SelectConnection whose loop basic_publish runs
	error = ConfirmTimeout(
		f"RabbitMQ did not confirm the message for {routing_key!r} within {timeout:g} s;"
		" the connection is dropped as lost"
	)
	timer = loop_connection.ioloop.call_later(timeout, lambda: loop_connection._terminate_stream(error))
	try:
		channel.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
	finally:
		loop_connection.ioloop.remove_timeout(timer)
