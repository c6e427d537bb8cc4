"""Failures against each real bus: retries that do not block, dead letters with their origin.

Every message goes to the same key (one Kafka partition), so a message processed after a
failing one proves the failing one did not block its partition.
"""

import json
import time
import uuid

from consumer_buses import KafkaBus, RabbitBus, bus_fixture, raw, wire  # noqa: F401
from consumer_items import handle_item, item, item_consumer

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking
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
from cauldron_fabric.core.consumer.tracking_sql import TrackingUnavailable
from cauldron_fabric.core.consumer.validation import validate_with_catalog
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.testing.events import document_event


def approval_request_without_approvers():
	return document_event(
		"Approval Request",
		"APR-1",
		"requested",
		{"requestId": "APR-1", "agent": "procurement"},
		type="agent.approval.requested",
		source="urn:agents:procurement",
		user=None,
		tenant=None,
	)


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
