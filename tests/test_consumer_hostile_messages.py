"""Messages any service on the bus may write, however hostile, against the real brokers.

Each run puts good events before and after the hostile ones, in one Kafka partition or one
queue: the good ones after them prove that nothing stopped the consumer, and each hostile one
must end as a dead letter whose reason says what is wrong (or be handled, when it is a sound
event with something odd beside it). Failures of the parser itself (non-JSON, nesting, long
ids, unreadable ce_ headers) are covered in test_consumer_failures.py.
"""

import gzip
import json
import uuid

import pika
from confluent_kafka import Producer
from consumer_buses import KafkaBus, RabbitBus, wire
from consumer_items import item, item_consumer
from hostile_messages import amqp_fields, amqp_timestamp, produce_raw

from cauldron_fabric.core.consumer import ConsumerOptions
from cauldron_fabric.core.consumer.messages import DEAD_LETTER_REASON, EXCEPTION_MESSAGE
from cauldron_fabric.core.retry import Backoff

INVALID = "invalid-envelope"


def options_for(prefix: str) -> ConsumerOptions:
	return ConsumerOptions(
		group=f"{prefix}-{uuid.uuid4().hex[:6]}",
		max_attempts=2,
		backoff=Backoff(0.2, 1, 0.2, 0),
		commit_interval=0.2,
		poll_timeout=0.2,
	)


def test_kafka_hostile_records_are_dead_letters_that_say_why_and_the_partition_flows(kafka):
	bus = KafkaBus(kafka)
	options = options_for("hostile")
	channel = bus.channel()
	source = bus.source(options, channel)
	_, sound_body, sound_headers, _ = wire(item("good", 2))
	without_data = item("good", 9).to_dict()
	del without_data["data"]
	producer = Producer({"bootstrap.servers": kafka.bootstrap})

	def produce(value, headers=(), key=b"I-1"):
		producer.produce(channel, value=value, key=key, headers=list(headers), partition=0)
		producer.flush(10)

	def produce_event(n):
		_, body, headers, _ = wire(item("good", n))
		produce(body, headers)

	produce_event(1)
	# Enough records first for Python to specialise the source's call sites, as in a long-running
	# consumer: the client's error then went unnoticed where it happened and broke a later call.
	warm = range(10, 40)
	for n in warm:
		produce_event(n)
	# A sound event whose header name is no UTF-8 (a Go client writes names as bytes): the
	# Kafka client raised reading it, out of poll(), at every restart on the same record.
	unreadable = [
		(b"\xff\xfe-trace", b"1"),
		*((name.encode(), value.encode()) for name, value in sound_headers),
	]
	produce_raw(kafka.bootstrap, channel, 0, b"I-1", sound_body, unreadable)
	produce_event(3)
	produce(None)  # a tombstone
	produce(b"[1, 2]")
	produce(json.dumps(without_data).encode())
	# A key named twice: read last-wins, the handler acted on another entity than a reader that
	# keeps the first one (or refuses) saw in the same bytes.
	produce(sound_body.replace(b'"entityId":', b'"entityId":"other","entityId":', 1), sound_headers)
	# Half a surrogate pair: JSON reads it, no UTF-8 column or message can hold the text it makes.
	produce(sound_body.replace(b'"mode":"good"', b'"mode":"\\ud800"', 1), sound_headers)
	produce_event(4)

	consumer, tracking, letters = item_consumer(source, options)
	try:
		consumer.run(lambda: len(tracking.effects) == 33 and len(letters) == 6, max_seconds=30)
		assert sorted(n for n, _ in tracking.effects) == [1, 3, 4, *warm]
		assert [letter.failure.reason for letter in letters] == [INVALID] * 6
		unread, tombstone, array, incomplete, twice, lone = (letter.failure.message for letter in letters)
		assert "header" in unread and "UTF-8" in unread
		assert "no body" in tombstone
		assert "JSON array" in array
		assert "'data' must be an object" in incomplete
		assert "the key 'entityId' appears twice in one object" in twice
		assert "lone surrogate escape" in lone
		assert letters[0].body == sound_body and letters[0].key == b"I-1"
		assert consumer.stats.totals().dead_lettered == 6
	finally:
		consumer.close()
	copies = bus.dead_letters(options.group, 6)
	assert [headers[DEAD_LETTER_REASON] for headers, _ in copies] == [INVALID] * 6
	assert copies[0][1] == sound_body and "UTF-8" in copies[0][0][EXCEPTION_MESSAGE]
	# The tombstone's copy is a tombstone (no value), not an empty record; the others keep theirs.
	assert copies[1][1] is None and copies[2][1] == b"[1, 2]"


def test_rabbitmq_odd_headers_and_huge_bodies_leave_the_connection_and_the_queue_flowing():
	bus = RabbitBus()
	try:
		options = options_for("hostile")
		channel = bus.channel()
		consumer, tracking, letters = item_consumer(bus.source(options, channel), options)
		huge = json.dumps({"blob": "x" * 5_000_000}).encode()
		publisher = bus.connection.channel()

		def publish(envelope, odd=None, encoding=None, pack=lambda body: body):
			_, body, ce_headers, routing_key = wire(envelope)
			amqp = {f"cloudEvents_{name[3:]}": value for name, value in ce_headers if name.startswith("ce_")}
			properties = pika.BasicProperties(
				headers={**amqp, **(odd or {})}, content_type="application/json", content_encoding=encoding
			)
			publisher.basic_publish(channel, routing_key, pack(body), properties)

		publish(item("good", 1))
		with amqp_fields():
			# A timestamp past the year 9999 in a header the fabric does not even read: pika
			# raised decoding it, the connection dropped, and the message came back to drop it
			# again, so nothing in the queue was handled any more.
			publish(item("good", 2), {"x-sent-at": amqp_timestamp(2**63)})
		# A header name that is no UTF-8 (pika hands it over as bytes): the event was
		# dead-lettered as a TypeError of the parser.
		publish(item("good", 3), {b"\xff\xfe-trace": "1"})
		publisher.basic_publish(channel, "garbage.created", huge, pika.BasicProperties())
		# A compressed body: read as it came it was "not valid JSON (byte 0x8b)"; the charset
		# some clients write as the encoding is no compression.
		publish(item("zipped", 5), encoding="gzip", pack=gzip.compress)
		publish(item("good", 4), encoding="utf-8")
		try:
			consumer.run(lambda: len(tracking.effects) == 4 and len(letters) == 2, max_seconds=30)
		finally:
			consumer.close()
		assert sorted(n for n, _ in tracking.effects) == [1, 2, 3, 4]
		letter, zipped = letters
		assert letter.failure.reason == INVALID and letter.body == huge
		assert "'id' is required" in letter.failure.message
		assert zipped.failure.reason == INVALID and gzip.decompress(zipped.body)
		assert "its body is 'gzip'-encoded (AMQP content_encoding)" in zipped.failure.message
		(headers, body), _ = bus.dead_letters(options.group, 2)
		assert body == huge and headers[DEAD_LETTER_REASON] == INVALID
		assert bus.lag(options.group, channel) == 0
	finally:
		bus.close()
