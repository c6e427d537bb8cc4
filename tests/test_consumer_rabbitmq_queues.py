"""A RabbitMQ consumer's queues: declared again when deleted, bound to what its handlers'
patterns match, and what the broker sets aside in them kept as dead letters.
"""

import re
import time
import uuid

import pika
import pytest
from consumer_buses import RabbitBus, wire
from consumer_items import handle_item, item, item_consumer

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.core.consumer.messages import (
	CONSUMER_GROUP,
	DEAD_LETTER_REASON,
)
from cauldron_fabric.core.consumer.rabbitmq_queues import dead_letter_queue, retry_queue
from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.retry import Backoff
from conftest import make_envelope


def test_a_rabbitmq_consumer_whose_queue_was_deleted_declares_it_again_and_flows():
	# Deleting the group's queue makes the broker cancel its consumers; the source used to poll
	# on for ever without a consumer (and publishers' events were unroutable meanwhile).
	bus = RabbitBus()
	try:
		channel, group = bus.channel(), f"cancelled-{uuid.uuid4().hex[:6]}"
		options = ConsumerOptions(group=group, poll_timeout=0.2)
		source = bus.source(options, channel)
		tracking = MemoryTracking()
		consumer = Consumer(
			source, HandlerTable.from_mapping({"item.*": handle_item}), tracking.session(), options
		)
		try:
			bus.connection.channel().queue_delete(group)
			consumer.run(max_seconds=2.5)
			bus.publish(channel, [wire(item("good", n)) for n in range(3)])
			consumer.run(lambda: len(tracking.effects) == 3, max_seconds=10)
			assert sorted(n for n, _ in tracking.effects) == [0, 1, 2]
		finally:
			consumer.close()
	finally:
		bus.close()


def test_a_rabbitmq_consumer_whose_delay_and_dead_letter_queues_were_deleted_declares_them_again():
	# Deleting a delay queue or the dead-letter queue (a purge by hand, a clean-up script) made
	# every retry or dead letter unroutable: the message was deferred, its handler run again and
	# again, and it never got anywhere until the process restarted.
	bus = RabbitBus()
	try:
		channel, group = bus.channel(), f"undelayed-{uuid.uuid4().hex[:6]}"
		options = ConsumerOptions(
			group=group,
			max_attempts=2,
			backoff=Backoff(0.2, 1, 0.2, 0),
			outage_backoff=Backoff(0.2, 1, 0.2, 0),
			poll_timeout=0.2,
		)
		source = bus.source(options, channel)
		admin = bus.connection.channel()
		for delay in source.retry_delays:
			admin.queue_delete(retry_queue(group, delay))
		admin.queue_delete(dead_letter_queue(group))
		consumer, tracking, letters = item_consumer(source, options)
		try:
			bus.publish(channel, [wire(item("flaky", 1)), wire(item("doomed", 2))])
			consumer.run(lambda: len(tracking.effects) == 1 and len(letters) == 1, max_seconds=10)
			assert [n for n, _ in tracking.effects] == [1], (
				"the flaky item was retried through its delay queue"
			)
			assert [letter.destination for letter in letters] == [dead_letter_queue(group)]
			totals = consumer.stats.totals()
			assert (totals.retried, totals.deferred) == (2, 0), totals
		finally:
			consumer.close()
		assert len(bus.dead_letters(group, 1, timeout=5)) == 1
	finally:
		bus.close()


def test_rabbitmq_binds_what_the_handlers_patterns_match_a_lone_star_included():
	# A handler pattern of a lone '*' matches every event (core.delivery.matching), but as an
	# AMQP binding key '*' matches only one-word routing keys, which no event type is: the
	# group's queue was bound for nothing and its handler never saw an event.
	bus = RabbitBus()
	try:
		channel, group = bus.channel(), f"patterns-{uuid.uuid4().hex[:6]}"
		seen = {"every": [], "agent": []}
		handlers = HandlerTable.from_mapping(
			{
				"*": lambda envelope, context: seen["every"].append(envelope.type),
				"agent.**": lambda envelope, context: seen["agent"].append(envelope.type),
			}
		)
		options = ConsumerOptions(group=group, poll_timeout=0.2)
		source = open_source(bus.url, options, handlers.patterns, broker_options={"exchange": channel})
		bus.remember(group, source.retry_delays)
		tracking = MemoryTracking()
		consumer = Consumer(source, handlers, tracking.session(), options)
		types = ["item.created", "agent.task.created", "sales_invoice.submitted"]
		try:
			events = [
				make_envelope("Item", "I-1", "created"),
				make_envelope("Agent", "A-1", "task.created"),
				make_envelope("Sales Invoice", "S-1", "submitted"),
			]
			assert [e.type for e in events] == types
			bus.publish(channel, [wire(e) for e in events])
			consumer.run(lambda: len(seen["every"]) == 3, max_seconds=5)
			assert sorted(seen["every"]) == sorted(types)
			assert seen["agent"] == ["agent.task.created"]
		finally:
			consumer.close()
	finally:
		bus.close()


def test_an_event_that_expired_in_a_rabbitmq_group_queue_is_a_dead_letter_not_dropped():
	# Only a request's requester stops waiting. An event that expired in the group's queue (a
	# producer's per-message TTL, or a TTL policy on the queues while the consumers were down)
	# was dropped as an "expired request" with a log line: lost, with nothing to retry.
	bus = RabbitBus()
	try:
		channel, group = bus.channel(), f"expiring-{uuid.uuid4().hex[:6]}"
		options = ConsumerOptions(group=group, poll_timeout=0.1)
		bus.source(options, channel).close()  # the group's queues exist, but no consumer runs
		event = item("good", 1)
		headers = {f"cloudEvents_{k[3:]}": v for k, v in kafka_headers(event) if k.startswith("ce_")}
		properties = pika.BasicProperties(headers=headers, content_type="application/json", expiration="50")
		bus.connection.channel().basic_publish(channel, event.type, event.to_json().encode(), properties)
		time.sleep(0.5)
		bus.connection.channel().queue_declare(group, passive=True)  # the broker expires it on a look
		consumer, _tracking, letters = item_consumer(bus.source(options, channel), options)
		try:
			consumer.run(lambda: bool(letters), max_seconds=10)
		finally:
			consumer.close()
		assert consumer.stats.totals().expired == 0, "an event is no request"
		assert [(letter.failure.reason, letter.envelope.id) for letter in letters] == [
			("broker-dead-lettered", event.id)
		]
		assert "expired" in letters[0].failure.message
	finally:
		bus.close()


def test_a_message_the_broker_dead_letters_from_a_rabbitmq_group_queue_becomes_a_recorded_dead_letter():
	# Only expired requests are dropped from <group>.expired; anything else the broker set aside
	# there (here: rejected by a foreign client of the group's queue) was accepted once and must
	# stay visible, as a dead letter with its origin, not vanish.
	bus = RabbitBus()
	try:
		channel, group = bus.channel(), f"rejected-{uuid.uuid4().hex[:6]}"
		options = ConsumerOptions(group=group, poll_timeout=0.1)
		bus.source(options, channel).close()
		bus.publish(channel, [wire(item("good", 1))])
		foreign = bus.connection.channel()
		method, _properties, _body = foreign.basic_get(group)
		foreign.basic_reject(method.delivery_tag, requeue=False)
		consumer, tracking, letters = item_consumer(bus.source(options, channel), options)
		try:
			consumer.run(lambda: bool(letters), max_seconds=10)
		finally:
			consumer.close()
		assert tracking.effects == [], "set aside by the broker, not handled behind its back"
		assert [(letter.failure.reason, letter.envelope.data.payload["n"]) for letter in letters] == [
			("broker-dead-lettered", 1)
		]
		assert "rejected" in letters[0].failure.message
		[(headers, _body)] = bus.dead_letters(group, 1, timeout=5)
		assert (headers[DEAD_LETTER_REASON], headers[CONSUMER_GROUP]) == ("broker-dead-lettered", group)
	finally:
		bus.close()


def test_rabbitmq_a_group_whose_queue_exists_with_other_arguments_is_refused_with_what_to_do():
	# The group's queue dead-letters into '<exchange>.dlx': after the exchange is changed in
	# Fabric Settings (or with a queue declared by hand), RabbitMQ refuses to declare it again
	# (PRECONDITION_FAILED). That came out as TransportUnavailable, "the consumer keeps
	# trying", and the consumer tried for ever, consuming nothing.
	bus = RabbitBus()
	try:
		before, after = bus.channel(), bus.channel()
		options = ConsumerOptions(group=f"moved-{uuid.uuid4().hex[:6]}", poll_timeout=0.1)
		bus.source(options, before).close()
		with pytest.raises(ConfigurationError, match="inequivalent arg") as refused:
			bus.source(options, after)
		assert "consume as another group" in str(refused.value)
	finally:
		bus.close()


def test_rabbitmq_binding_keys_that_no_event_type_can_match_are_refused_before_connecting():
	# A Kafka regex or a key with spaces (--topics 'bad key') bound the queue to nothing any
	# event is routed by: the consumer ran, consuming nothing, without a word.
	options = ConsumerOptions(group=f"keys-{uuid.uuid4().hex[:6]}", poll_timeout=0.1)
	for key, says in (
		("^cauldron\\..*", "is not a lower-case word"),
		("bad key", "'bad key' is not a lower-case word"),
		("agent.task*", "wildcards stand for whole words"),
	):
		with pytest.raises(ConfigurationError, match=re.escape(says)):
			open_source("amqp://guest:guest@127.0.0.1:1/%2F", options, [key])
	bus = RabbitBus()
	try:
		keys = ["agent.#", "agent.*.created", "#", "sales_invoice.**"]
		source = open_source(bus.url, options, keys, broker_options={"exchange": bus.channel()})
		bus.remember(options.group, source.retry_delays)
		assert source.binding_keys == ["agent.#", "agent.*.created", "#", "sales_invoice.#"]
		source.close()
	finally:
		bus.close()
