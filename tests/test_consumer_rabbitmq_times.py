"""A RabbitMQ consumer reading CloudEvents 'time' as other clients write it: an AMQP
timestamp, or one past what a calendar holds.
"""

import datetime as dt
import time
import uuid

import pika
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from consumer_buses import RabbitBus, wire
from consumer_items import item, item_consumer

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking


def test_rabbitmq_takes_cloudevents_whose_time_is_an_amqp_timestamp():
	# The AMQP binding carries 'time' as an AMQP timestamp: the official SDK's to_binary writes
	# milliseconds since the epoch (an integer), other clients a timestamp field. The source
	# turned the integer into digits and dropped the timestamp, so every such event of another
	# Cauldron module was a dead letter ('time' is no ISO-8601 timestamp, or missing).
	bus = RabbitBus()
	try:
		channel, group = bus.channel(), f"timestamps-{uuid.uuid4().hex[:6]}"
		options = ConsumerOptions(group=group, poll_timeout=0.2)
		source = bus.source(options, channel)
		seen, letters = [], []
		handlers = HandlerTable.from_mapping({"lore.*.*": lambda envelope, context: seen.append(envelope)})
		consumer = Consumer(
			source, handlers, MemoryTracking().session(), options, on_dead_letter=letters.append
		)
		moment = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
		event = CloudEvent(
			attributes={
				"type": "lore.document.indexed",
				"source": "urn:cauldron:lore",
				"id": "lore-1",
				"time": moment,
				"subject": "Document/D-1",
				"datacontenttype": "application/json",
			},
			data={"title": "Runbook"},
		)
		sdk = ce_amqp.to_binary(event, JSONFormat())
		assert sdk.application_properties["cloudEvents_time"] == 1767323045000
		as_field = {**sdk.application_properties, "cloudEvents_id": "lore-2", "cloudEvents_time": moment}
		chan = bus.connection.channel()
		for headers in (sdk.application_properties, as_field):
			properties = pika.BasicProperties(headers=headers, content_type="application/json")
			chan.basic_publish(channel, "lore.document.indexed", sdk.application_data, properties)
		try:
			consumer.run(lambda: len(seen) + len(letters) == 2, max_seconds=5)
			assert [letter.failure.message for letter in letters] == []
			assert [(e.id, e.time) for e in seen] == [
				("lore-1", "2026-01-02T03:04:05.000000Z"),
				("lore-2", "2026-01-02T03:04:05.000000Z"),
			]
		finally:
			consumer.close()
	finally:
		bus.close()


def test_rabbitmq_a_time_header_past_the_calendar_does_not_stop_the_consumer():
	# An integer 'time' header is read as epoch milliseconds; one in microseconds (or
	# nanoseconds) is a year past 9999, and datetime raised ValueError out of poll(). The message
	# stayed unacknowledged, so every member that got it next stopped the same way.
	bus = RabbitBus()
	try:
		channel, group = bus.channel(), f"calendar-{uuid.uuid4().hex[:6]}"
		options = ConsumerOptions(group=group, poll_timeout=0.2)
		consumer, tracking, letters = item_consumer(bus.source(options, channel), options)
		late, good = item("late", 1), item("good", 2)
		headers = {f"cloudEvents_{k[3:]}": v for k, v in kafka_headers(late) if k.startswith("ce_")}
		headers["cloudEvents_time"] = int(time.time() * 1_000_000)
		properties = pika.BasicProperties(headers=headers, content_type="application/json")
		bus.connection.channel().basic_publish(channel, late.type, late.to_json().encode(), properties)
		bus.publish(channel, [wire(good)])
		try:
			consumer.run(lambda: len(letters) + len(tracking.effects) == 2, max_seconds=10)
		finally:
			consumer.close()
		assert [letter.failure.message for letter in letters] == []  # the body is the whole event
		assert sorted(n for n, _ in tracking.effects) == [1, 2]
		assert bus.lag(group, channel) == 0
	finally:
		bus.close()
