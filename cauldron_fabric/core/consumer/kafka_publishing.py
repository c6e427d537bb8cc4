"""What a Kafka consumer publishes: retry copies, dead letters and replies, each waited for.

A retry or dead-letter copy goes through the source's transport, a reply straight through its
producer to the requester's partition. Each waits up to ``timeout`` (the source's
``PUBLISH_TIMEOUT``) for Kafka to take it, and raises when Kafka refuses it or does not answer.
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaError, KafkaException

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.consumer.messages import CORRELATION_ID, REPLY_PARTITION, InboundMessage
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import TransportUnavailable
from cauldron_fabric.core.ports import OutboundMessage
from cauldron_fabric.core.transports.kafka import KafkaTransport


def publish_copy(
	transport: KafkaTransport,
	topic: str,
	message: InboundMessage,
	headers: tuple[tuple[str, str], ...],
	timeout: float,
) -> str:
	"""Copies ``message`` to ``topic`` with ``headers`` and returns the topic once Kafka took it."""
	# The key as it came, bytes or none: decoded, a binary key became another key (another
	# partition than its entity's events once the dead letter is retried), and none an empty one.
	# So with the value: a tombstone's copy is a tombstone, which a compacted topic tells apart.
	body = None if message.tombstone else message.body
	delivery = transport.publish([OutboundMessage(topic, message.key, body, headers)], timeout)[0]
	if not delivery.ok:
		raise delivery.error or TransportUnavailable(f"Kafka did not take the copy for {topic!r}.")
	return topic


def produce_reply(
	transport: KafkaTransport, topic: str, request: InboundMessage, envelope: Envelope, timeout: float
) -> None:
	"""Produces the reply to ``topic`` and the requester's partition, and waits for the ack."""
	partition = request.number(REPLY_PARTITION)
	headers = [
		*kafka_headers(envelope),
		(CORRELATION_ID, request.header(CORRELATION_ID) or envelope.metadata.causation_id or ""),
	]
	outcome: list[KafkaError | None] = []
	producer = transport.producer
	try:
		producer.produce(
			topic,
			value=envelope.to_json().encode(),
			key=(request.header(CORRELATION_ID) or "").encode(),
			headers=headers,
			partition=int(partition) if partition is not None else -1,  # any, when unreadable
			on_delivery=lambda err, _msg: outcome.append(err),
		)
	except (KafkaException, BufferError, OverflowError) as exc:
		# Refused on the spot (a partition the client knows is missing or past a C int, a
		# full queue): the same failure as a refused delivery, not a crash of the consumer.
		raise TransportUnavailable(f"Kafka did not take the reply for {topic!r}: {exc}.") from exc
	deadline = time.monotonic() + timeout
	while not outcome and time.monotonic() < deadline:
		producer.poll(0.01)
	if not outcome or outcome[0] is not None:
		raise TransportUnavailable(
			f"Kafka did not take the reply for {topic!r}: {outcome[0] if outcome else 'timeout'}."
		)
