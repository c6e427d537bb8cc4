"""The Kafka source on a real Kafka-protocol broker: what a pattern matches, keys, commits."""

import time
import uuid
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition
from consumer_buses import KafkaBus, raw, wait_for, wire
from tcp_proxy import OffsetCommitCutter

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.core.consumer.kafka import PATTERN_REFRESH_SECONDS
from cauldron_fabric.core.consumer.kafka_group import dead_letter_topic, group_lag, retry_topic
from cauldron_fabric.core.consumer.messages import ATTEMPTS, CONSUMER_GROUP, NOT_BEFORE
from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.testing.kafka_broker import KafkaBroker, create_topic, free_port, produce, read_topic
from conftest import make_envelope


@pytest.mark.parametrize("topic", [".", "..", "two words"])
def test_a_topic_kafka_refuses_is_refused_with_what_to_write(kafka, topic):
	options = ConsumerOptions(group=f"g{uuid.uuid4().hex[:6]}", poll_timeout=0.2)
	with pytest.raises(ConfigurationError, match="is not a Kafka topic name") as caught:
		open_source(kafka.url, options, topics=["fine.events", topic])
	assert repr(topic) in str(caught.value) and "--topics" in str(caught.value)


def test_a_pattern_matching_the_groups_own_dead_letter_topic_does_not_consume_its_dead_letters(kafka):
	# The documented pattern '^cauldron\..*' with a group named 'cauldron.billing' matches the
	# group's own dead-letter topic 'cauldron.billing.dlt'. A dead letter read back from it fails
	# the same way and is dead-lettered again, and again: one bad message, endless copies.
	prefix = f"p{uuid.uuid4().hex[:6]}"
	group, topic = f"{prefix}.billing", f"{prefix}.events"
	create_topic(kafka.bootstrap, topic, 2)
	options = ConsumerOptions(group=group, max_attempts=2, poll_timeout=0.2, commit_interval=0.2)
	source = open_source(
		kafka.url, options, pattern=rf"^{prefix}\..*", broker_options={"session_timeout_ms": 6000}
	)
	letters = []
	consumer = Consumer(
		source,
		HandlerTable.from_mapping({"item.*": lambda e, c: None}),
		MemoryTracking().session(),
		options,
		on_dead_letter=letters.append,
	)
	try:
		own_letters = dead_letter_topic(group)
		assert wait_for(
			lambda: consumer.consume_round() >= 0 and own_letters in {t for t, _ in source.assigned}, 30
		), "the pattern matches the group's dead-letter topic"
		KafkaBus(kafka).publish(topic, [raw(b"{not json")])
		consumer.run(max_seconds=12)
	finally:
		consumer.close()
	copies = read_topic(kafka.bootstrap, own_letters, 2, timeout=8)
	assert len(letters) == 1 and len(copies) == 1, f"{len(letters)} dead letters for one bad message"
	assert KafkaBus(kafka).lag(group, own_letters) == 0, "the dead letters passed over are committed"


def test_retry_and_dead_letter_copies_keep_the_key_as_it_came(kafka):
	# Another producer's key need not be text (a serialised id) and may be missing. The copies
	# used to carry the key decoded with replacement characters (another key, so another
	# partition and ordering than its entity's events when the dead letter is retried) and an
	# empty key for none.
	bus = KafkaBus(kafka)
	channel, group = bus.channel(), f"keys-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(
		group=group, max_attempts=2, backoff=Backoff(0.2, 1, 0.2, 0), commit_interval=0.2
	)
	source = bus.source(options, channel)
	binary_key, failing = b"\xff\x00\xfe-order-7", make_envelope("Item", "I-1", "created", n=1)
	producer = Producer({"bootstrap.servers": kafka.bootstrap})
	producer.produce(channel, value=b"{not json", key=binary_key)
	producer.produce(channel, value=b"{not json either")
	_, body, headers, _ = wire(failing)
	producer.produce(channel, value=body, key=binary_key, headers=list(headers))
	producer.flush(10)

	def fail(envelope, context):
		raise RuntimeError("the ledger is closed")

	letters = []
	consumer = Consumer(
		source,
		HandlerTable.from_mapping({"item.*": fail}),
		MemoryTracking().session(),
		options,
		on_dead_letter=letters.append,
	)
	try:
		consumer.run(lambda: len(letters) == 3, max_seconds=40)
	finally:
		consumer.close()
	assert len(letters) == 3 and consumer.stats.totals().retried == 1
	copies = read_topic(kafka.bootstrap, dead_letter_topic(group), 3)
	assert sorted((m.key() or b"-") for m in copies) == sorted([binary_key, b"-", binary_key])
	assert None in [m.key() for m in copies], "a message without a key is copied without one"
	(retried,) = read_topic(kafka.bootstrap, retry_topic(group, 1), 1)
	assert retried.key() == binary_key


def test_retry_copies_waiting_in_a_higher_tier_are_handled_after_max_attempts_is_lowered(kafka):
	# Lowering Handler attempts before dead letter rebuilds the consumers with fewer retry
	# topics. Copies already waiting in the higher ones were never read again: lost.
	bus = KafkaBus(kafka)
	channel, group = bus.channel(), f"tiers-{uuid.uuid4().hex[:6]}"
	quick = Backoff(0.2, 1, 0.2, 0)
	handled = []

	def fails_twice(envelope, context):
		if context.attempt < 3:
			raise RuntimeError(f"the ledger refuses attempt {context.attempt}")
		handled.append((envelope.id, context.attempt))

	def consumer_for(max_attempts):
		options = ConsumerOptions(group=group, max_attempts=max_attempts, backoff=quick, commit_interval=0.2)
		return Consumer(
			bus.source(options, channel),
			HandlerTable.from_mapping({"item.*": fails_twice}),
			MemoryTracking().session(),
			options,
		)

	before = consumer_for(5)
	event = make_envelope("Item", "I-1", "created", n=1)
	bus.publish(channel, [wire(event)])
	try:
		before.run(lambda: before.stats.totals().retried == 2, max_seconds=40)
		assert before.stats.totals().retried == 2 and not handled, "the copy waits in retry topic 2"
	finally:
		before.close()
	after = consumer_for(2)  # one retry topic from now on
	try:
		after.run(lambda: bool(handled), max_seconds=30)
	finally:
		after.close()
	assert handled == [(event.id, 3)], "the copy waiting in retry topic 2 is handled"


def test_a_pattern_consumer_reads_a_matching_topic_created_after_it_started(kafka):
	# librdkafka matches a pattern against the topics it knows, and learns of new ones at its
	# metadata refresh: every five minutes by default. Events of a new matching topic waited
	# that long before anyone read them.
	prefix = f"n{uuid.uuid4().hex[:6]}"
	first, later = f"{prefix}.orders", f"{prefix}.invoices"
	create_topic(kafka.bootstrap, first, 1)
	options = ConsumerOptions(group=f"{prefix}-group", poll_timeout=0.2, commit_interval=0.2)
	source = open_source(
		kafka.url, options, pattern=rf"^{prefix}\..*", broker_options={"session_timeout_ms": 6000}
	)
	handled = []
	consumer = Consumer(
		source,
		HandlerTable.from_mapping({"item.*": lambda e, c: handled.append(e.id)}),
		MemoryTracking().session(),
		options,
	)
	try:
		assert wait_for(
			lambda: consumer.consume_round() >= 0 and first in {t for t, _ in source.assigned}, 20
		), "the pattern's first topic is assigned"
		create_topic(kafka.bootstrap, later, 1)
		event = make_envelope("Item", "I-1", "created", n=1)
		KafkaBus(kafka).publish(later, [wire(event)])
		started = time.monotonic()
		consumer.run(lambda: bool(handled), max_seconds=PATTERN_REFRESH_SECONDS + 15)
		took = time.monotonic() - started
	finally:
		consumer.close()
	assert handled == [event.id], "the event of the topic created later is consumed"
	assert took < PATTERN_REFRESH_SECONDS + 10, f"found after {took:.0f} s"


def test_a_commit_that_failed_is_sent_again_while_no_message_comes():
	# A background commit cleared the consumer's mark of offsets to commit when it started. When
	# the commit then failed (the connection broke under it, a rebalance), nothing sent it again
	# until the next message: the group's offset stayed behind, and a restart replayed what was
	# handled. The client reaches this broker through a proxy that drops its offset commits.
	proxy_port = free_port()
	with KafkaBroker(advertised_port=proxy_port) as broker:
		proxy = OffsetCommitCutter(proxy_port, broker.port).start()
		topic, group = f"commits.{uuid.uuid4().hex[:8]}", f"commits-{uuid.uuid4().hex[:6]}"
		create_topic(broker.bootstrap, topic, 1)
		event = make_envelope("Item", "I-1", "created", n=1)
		produce(broker.bootstrap, topic, [event])
		options = ConsumerOptions(group=group, poll_timeout=0.2, commit_interval=0.2)
		handled = []

		def cut_offset_commits(envelope, context):
			proxy.cutting = True
			handled.append(envelope.id)

		consumer = Consumer(
			open_source(f"kafka://127.0.0.1:{proxy_port}", options, [topic]),
			HandlerTable.from_mapping({"item.*": cut_offset_commits}),
			MemoryTracking().session(),
			options,
		)
		try:
			consumer.run(lambda: bool(handled), max_seconds=30)
			consumer.run(max_seconds=8)  # the client gives the commit up after about 6 s
			proxy.cutting = False
			# Nothing new comes: the consumer runs on, a second at a time, until the group's
			# offset moves (on a loaded machine the retry takes longer than on a quiet one).
			deadline = time.monotonic() + 20
			while True:
				consumer.run(max_seconds=1)
				(entry,) = group_lag(broker.bootstrap, group, [topic])
				if entry.lag == 0 or time.monotonic() > deadline:
					break
		finally:
			consumer.close()
			proxy.stop()
	assert handled == [event.id]
	assert (entry.position, entry.lag) == (1, 0), "the handled event's offset is committed"


class PartlyRefusedCommits:
	"""The real client, except that a synchronous commit leaves one partition out and returns it
	with an error: what librdkafka returns when the broker refused some partitions of a commit
	and not others (it raises only when every partition failed). The test broker never refuses
	one partition alone, so this is where the test steps in; the broker and the commits are real."""

	def __init__(self, source, refused: int):
		self.client, self.source, self.refused = source.consumer, source, refused

	def __getattr__(self, name):
		return getattr(self.client, name)

	def commit(self, *args, asynchronous=True, **kwargs):
		if asynchronous or args or kwargs:
			return self.client.commit(*args, asynchronous=asynchronous, **kwargs)
		stored = [TopicPartition(*key, offset) for key, offset in self.source._done.items()]
		kept = [p for p in stored if p.partition != self.refused]
		error = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)
		refused = [
			SimpleNamespace(topic=p.topic, partition=p.partition, error=error)
			for p in stored
			if p.partition == self.refused
		]
		return [*self.client.commit(offsets=kept, asynchronous=False), *refused]


def test_a_partition_whose_synchronous_commit_was_refused_is_committed_again(kafka):
	# The synchronous commits (at a revocation, on close) return the partitions the broker
	# refused instead of raising, and the source took them as committed: while no message came,
	# nothing sent those offsets again, and the group re-read them after the next rebalance.
	topic, group = f"sync.{uuid.uuid4().hex[:8]}", f"sync-{uuid.uuid4().hex[:6]}"
	create_topic(kafka.bootstrap, topic, 2)
	producer = Producer({"bootstrap.servers": kafka.bootstrap})
	for partition in (0, 1):
		producer.produce(topic, value=make_envelope(n=partition).to_json().encode(), partition=partition)
	producer.flush(10)

	def positions():
		return {entry.partition: entry.position for entry in group_lag(kafka.bootstrap, group, [topic])}

	options = ConsumerOptions(group=group)
	source = open_source(kafka.url, options, [topic], broker_options={"session_timeout_ms": 6000})
	try:
		received = []
		wait_for(lambda: received.extend(source.poll(10, 0.5)) or len(received) == 2, 30)
		assert len(received) == 2, "a message from each partition"
		for message in received:
			source.done(message)
		source.consumer = PartlyRefusedCommits(source, refused=1)
		source._commit(asynchronous=False)  # as at a revocation
		assert positions() == {0: 1, 1: 0}, "the broker took partition 0's offset only"
		source.commit()  # the next background commit, no new message having come
		wait_for(lambda: source.poll(1, 0.2) == [] and positions() == {0: 1, 1: 1}, 15)
		assert positions() == {0: 1, 1: 1}, "partition 1's offset was committed again"
	finally:
		source.close()


def test_a_pattern_matching_another_groups_dead_letters_does_not_bounce_them_back(kafka):
	# Two groups on the documented pattern '^cauldron\..*', named 'cauldron.billing' and
	# 'cauldron.shipping', each read the other's dead-letter (and retry) topic. A bad message
	# dead-lettered by one was read by the other, which dead-lettered it to its own topic, which
	# the first read again: one bad message, endless copies in both.
	prefix = f"b{uuid.uuid4().hex[:6]}"
	topic = f"{prefix}.events"
	create_topic(kafka.bootstrap, topic, 1)
	consumers, letters = [], {}
	for name in ("billing", "shipping"):
		group = f"{prefix}.{name}"
		options = ConsumerOptions(group=group, max_attempts=2, poll_timeout=0.1, commit_interval=0.2)
		source = open_source(
			kafka.url, options, pattern=rf"^{prefix}\..*", broker_options={"session_timeout_ms": 6000}
		)
		letters[group] = []
		consumers.append(
			Consumer(
				source,
				HandlerTable.from_mapping({"item.*": lambda e, c: None}),
				MemoryTracking().session(),
				options,
				on_dead_letter=letters[group].append,
			)
		)
	try:
		own = {c: dead_letter_topic(c.options.group) for c in consumers}
		assert wait_for(
			lambda: all(
				c.consume_round() >= 0 and own[c] in {t for t, _ in c.source.assigned} for c in consumers
			),
			30,
		), "each group's pattern matches its own dead-letter topic"
		KafkaBus(kafka).publish(topic, [raw(b"{not json")])
		deadline = time.monotonic() + 12
		while time.monotonic() < deadline:
			for consumer in consumers:
				consumer.consume_round()
	finally:
		for consumer in consumers:
			consumer.close()
	for group, found in letters.items():
		copies = read_topic(kafka.bootstrap, dead_letter_topic(group), 2, timeout=5)
		assert (len(found), len(copies)) == (1, 1), f"{group}: {len(found)} dead letters for one bad message"


def test_a_retry_copy_due_in_the_far_future_waits_no_longer_than_its_tier(kafka):
	# A member whose clock ran an hour ahead wrote its retry copy's not-before time an hour
	# ahead: the member reading the retry partition paused it for that hour, and every retry
	# copied there behind it (of any entity) waited as long.
	bus = KafkaBus(kafka)
	channel, group = bus.channel(), f"skew-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(
		group=group, backoff=Backoff(0.5, 2, 1.0, 0), poll_timeout=0.2, commit_interval=0.2
	)
	source = bus.source(options, channel)
	event = make_envelope("Item", "I-1", "created", n=1)
	_, body, headers, _ = wire(event)
	skewed = [
		*headers,
		(CONSUMER_GROUP, group),
		(ATTEMPTS, "2"),
		(NOT_BEFORE, str(int((time.time() + 3600) * 1000))),
	]
	producer = Producer({"bootstrap.servers": kafka.bootstrap})
	producer.produce(retry_topic(group, 1), value=body, key=b"I-1", headers=skewed)
	producer.flush(10)
	handled = []
	consumer = Consumer(
		source,
		HandlerTable.from_mapping({"item.*": lambda envelope, context: handled.append(envelope.id)}),
		MemoryTracking().session(),
		options,
	)
	try:
		consumer.run(lambda: bool(handled), max_seconds=20)
	finally:
		consumer.close()
	assert handled == [event.id], "the copy is handled after its tier's delay, not an hour later"
