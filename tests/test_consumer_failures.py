"""Failures against each real bus: retries that do not block, dead letters with their origin.

Every message goes to the same key (one Kafka partition), so a message processed after a
failing one proves the failing one did not block its partition.
"""

import datetime as dt
import json
import time
import uuid

import pika
import pytest
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from consumer_buses import KafkaBus, RabbitBus, bus_fixture, raw, wire  # noqa: F401

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.core.consumer.messages import (
	ATTEMPTS,
	CONSUMER_GROUP,
	DEAD_LETTER_REASON,
	EXCEPTION_CLASS,
	EXCEPTION_MESSAGE,
	ORIGIN_OFFSET,
	ORIGIN_PARTITION,
	ORIGIN_TOPIC,
)
from cauldron_fabric.core.consumer.rabbitmq_queues import dead_letter_queue, retry_queue
from cauldron_fabric.core.consumer.tracking_sql import TrackingUnavailable
from cauldron_fabric.core.consumer.validation import validate_with_catalog
from cauldron_fabric.core.envelope import Envelope, EventData, EventMetadata, new_event_id, utc_now_iso
from cauldron_fabric.core.errors import ConfigurationError, PermanentError
from cauldron_fabric.core.retry import Backoff
from conftest import make_envelope


def item(mode, n):
	return make_envelope("Item", "I-1", "created", mode=mode, n=n)


def approval_request_without_approvers():
	return Envelope(
		id=new_event_id(),
		type="agent.approval.requested",
		source="urn:agents:procurement",
		time=utc_now_iso(),
		data=EventData(
			"Approval Request", "APR-1", "requested", {"requestId": "APR-1", "agent": "procurement"}
		),
		metadata=EventMetadata(new_event_id()),
	)


def handle_item(envelope, context):
	mode = envelope.data.payload["mode"]
	if mode == "flaky" and context.attempt == 1:
		raise ConnectionError("the ledger service blinked")
	if mode == "doomed":
		raise RuntimeError(f"ledger refuses item {envelope.data.payload['n']} on attempt {context.attempt}")
	if mode == "refused":
		raise PermanentError("item 6 is for another company")
	context.transaction.append((envelope.data.payload["n"], time.monotonic()))


def test_poison_messages_reach_the_dead_letters_with_origin_while_later_messages_flow(bus):
	channel, group = bus.channel(), f"failing-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(group=group, max_attempts=3, backoff=Backoff(0.3, 2, 1, 0), commit_interval=0.2)
	source = bus.source(options, channel)
	schema_bad = approval_request_without_approvers()
	messages = [
		wire(item("good", 1)),
		raw(b"{this is not json"),
		wire(schema_bad),
		wire(item("flaky", 4)),
		wire(item("doomed", 5)),
		wire(item("refused", 6)),
		wire(item("good", 7)),
	]
	placed = bus.publish(channel, [("I-1", *m[1:]) for m in messages])
	tracking, letters = MemoryTracking(), []
	consumer = Consumer(
		source,
		HandlerTable.from_mapping({"item.*": handle_item, "agent.approval.requested": lambda e, c: None}),
		tracking.session(),
		options,
		validate=validate_with_catalog,
		on_dead_letter=lambda letter: letters.append((letter, time.monotonic())),
	)
	consumer.run(lambda: len(tracking.effects) == 3 and len(letters) == 4, max_seconds=40)
	try:
		assert sorted(n for n, _ in tracking.effects) == [1, 4, 7]
		by_reason = {letter.failure.reason: (letter, at) for letter, at in letters}
		assert set(by_reason) == {
			"invalid-envelope",
			"schema-violation",
			"attempts-exhausted",
			"handler-refused",
		}
		effect_times = dict(tracking.effects)
		assert effect_times[7] < by_reason["attempts-exhausted"][1], "item 7 waited for item 5's retries"
		totals = consumer.stats.totals()
		assert (totals.processed, totals.dead_lettered, totals.retried) == (3, 4, 3)
		assert consumer.source.idle() and all(entry.lag == 0 for entry in consumer.source.lag())
	finally:
		consumer.close()

	dead = {headers[DEAD_LETTER_REASON]: (headers, body) for headers, body in bus.dead_letters(group, 4)}
	assert set(dead) == set(by_reason)
	for reason, position in (("invalid-envelope", 1), ("schema-violation", 2), ("attempts-exhausted", 4)):
		headers, body = dead[reason]
		assert body == messages[position][1], f"the {reason} dead letter carries the original body"
		assert headers[CONSUMER_GROUP] == group
		if bus.name == "kafka":
			assert (headers[ORIGIN_TOPIC], headers[ORIGIN_PARTITION]) == (channel, str(placed[position][0]))
			assert headers[ORIGIN_OFFSET] == str(placed[position][1])
		else:
			assert headers[ORIGIN_TOPIC] == messages[position][3] and headers[ORIGIN_PARTITION] == "0"
	assert dead["invalid-envelope"][0][EXCEPTION_CLASS] == "cauldron_fabric.core.errors.InvalidEnvelope"
	assert "not valid JSON" in dead["invalid-envelope"][0][EXCEPTION_MESSAGE]
	assert "approvers" in dead["schema-violation"][0][EXCEPTION_MESSAGE]
	doomed = dead["attempts-exhausted"][0]
	assert (doomed[ATTEMPTS], doomed[EXCEPTION_CLASS]) == ("3", "builtins.RuntimeError")
	assert doomed[EXCEPTION_MESSAGE] == "ledger refuses item 5 on attempt 3"
	assert json.loads(dead["handler-refused"][1])["data"]["payload"]["n"] == 6
	assert dead["handler-refused"][0][ATTEMPTS] == "1"
	assert by_reason["schema-violation"][0].envelope.id == schema_bad.id


def item_consumer(source, options):
	"""Returns a consumer handling items (and garbage) into memory, its tracking and dead letters."""
	tracking, letters = MemoryTracking(), []
	handlers = HandlerTable.from_mapping({"item.*": handle_item, "garbage.*": handle_item})
	consumer = Consumer(source, handlers, tracking.session(), options, on_dead_letter=letters.append)
	return consumer, tracking, letters


def test_messages_that_break_the_parser_are_dead_letters_not_crashes(bus):
	# Each of these used to escape the consumer: it died, restarted on the same message, died
	# again, and everything after it on the partition waited for ever.
	channel, group = bus.channel(), f"unreadable-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(
		group=group, max_attempts=2, backoff=Backoff(0.2, 1, 0.2, 0), commit_interval=0.2
	)
	source = bus.source(options, channel)
	key, body, headers, routing = wire(item("good", 3))
	traced = (key, body, (*headers, ("x-trace", b"\xff\xfe binary")), routing)  # not ours: ignored
	key, body, headers, routing = wire(item("good", 4))
	# A CloudEvents attribute that is no text: Kafka hands the bytes over as they are (a dead
	# letter); the RabbitMQ source reads header values leniently, so there the event is fine.
	attribute = "ce_subject"
	bad_attribute = (key, body, (*headers, (attribute, b"\xff\xfe")), routing)
	handled, unreadable = ([1, 3], 3) if bus.name == "kafka" else ([1, 3, 4], 2)
	long_id = item("good", 5).to_dict()
	long_id["id"] = "x" * 200
	messages = [
		traced,
		bad_attribute,
		raw(b"[" * 100_000 + b"]" * 100_000),  # nested deeper than the parser's recursion
		raw(json.dumps(long_id).encode()),
		wire(item("good", 1)),
	]
	bus.publish(channel, [("I-1", *m[1:]) for m in messages])
	consumer, tracking, letters = item_consumer(source, options)
	try:
		consumer.run(
			lambda: len(tracking.effects) == len(handled) and len(letters) == unreadable, max_seconds=40
		)
		assert sorted(n for n, _ in tracking.effects) == handled
		assert [letter.failure.reason for letter in letters] == ["invalid-envelope"] * unreadable
		reasons = " ".join(letter.failure.message for letter in letters)
		assert "recursion" in reasons and "at most 140" in reasons
		assert (f"{attribute} is not UTF-8" in reasons) == (bus.name == "kafka")
	finally:
		consumer.close()


class DownAtFirst:
	"""A tracking session whose database cannot be reached for its first ``seconds``."""

	def __init__(self, session, seconds):
		self.session, self.until = session, time.monotonic() + seconds

	def __getattr__(self, name):
		return getattr(self.session, name)

	def claim(self, *args):
		if time.monotonic() < self.until:
			raise TrackingUnavailable("the tracking database is down")
		return self.session.claim(*args)


def test_rabbitmq_hands_out_every_deferred_message_however_many_fall_due():
	# Prefetch 20, batches of 5: an outage defers all 20 at once. The 15 beyond the first
	# batch used to be dropped from the deferred list, never handled and never acknowledged.
	bus = RabbitBus()
	try:
		channel, group = bus.channel(), f"deferred-{uuid.uuid4().hex[:6]}"
		options = ConsumerOptions(
			group=group, batch_size=5, poll_timeout=0.2, outage_backoff=Backoff(1.0, 1.0, 1.0, 0)
		)
		source = bus.source(options, channel, prefetch=20)
		bus.publish(channel, [wire(item("good", n)) for n in range(20)])
		tracking = MemoryTracking()
		consumer = Consumer(
			source,
			HandlerTable.from_mapping({"item.*": handle_item}),
			DownAtFirst(tracking.session(), 0.8),
			options,
		)
		try:
			consumer.run(lambda: len(tracking.effects) == 20, max_seconds=20)
			assert sorted(n for n, _ in tracking.effects) == list(range(20))
		finally:
			consumer.close()
	finally:
		bus.close()


def test_a_message_too_large_to_copy_is_kept_as_a_dead_letter_record(kafka):
	# Just under a broker's 1 MB limit on its own, over the producer's once copied with the
	# dead-letter headers: the copy is refused for good. It used to be deferred for ever,
	# pausing its partition.
	bus = KafkaBus(kafka)
	channel, group = bus.channel(), f"oversized-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(group=group, max_attempts=2, commit_interval=0.2)
	source = bus.source(options, channel)
	huge = raw(b"x" * 1_000_500)
	bus.publish(channel, [("I-1", *huge[1:]), ("I-1", *wire(item("good", 1))[1:])], max_bytes=2_000_000)
	consumer, tracking, letters = item_consumer(source, options)
	try:
		consumer.run(lambda: len(tracking.effects) == 1 and len(letters) == 1, max_seconds=30)
		assert [n for n, _ in tracking.effects] == [1]
		(letter,) = letters
		assert letter.destination is None and len(letter.body) == 1_000_500
	finally:
		consumer.close()


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
