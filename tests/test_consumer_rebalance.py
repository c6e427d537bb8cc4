"""Rebalances on a real Kafka-protocol broker while partitions are paused for an outage.

A consumer pauses a partition to deliver a message again later (an outage, a retry copy not due
yet). When the group rebalances in the meantime, the partition may leave this member and come
back: it must then flow again, every message handled exactly once, nothing stuck or lost.
"""

import threading
import uuid

import pytest
from confluent_kafka import Producer
from consumer_buses import PARTITIONS, KafkaBus, wait_for, wire

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking
from cauldron_fabric.core.consumer.kafka_group import group_lag, retry_topic
from cauldron_fabric.core.consumer.tracking_sql import TrackingUnavailable
from cauldron_fabric.core.retry import Backoff
from conftest import make_envelope


class Member:
	"""One member of the group consuming in its own thread until stopped."""

	def __init__(self, bus, channel, options, tracking, outage, strategy, handler=None):
		self.source = bus.source(options, channel, assignment_strategy=strategy)
		self.consumer = Consumer(
			self.source,
			HandlerTable.from_mapping({"item.*": handler or record}),
			DownWhile(tracking.session(), outage),
			options,
		)
		self.stopping = threading.Event()
		self.thread = threading.Thread(target=self._run, daemon=True)
		self.thread.start()

	def _run(self):
		try:
			self.consumer.run(self.stopping.is_set)
		finally:
			self.consumer.close()  # commits and leaves the group: its partitions move at once

	def stop(self):
		self.stopping.set()
		self.thread.join(30)


def record(envelope, context):
	context.transaction.append(envelope.id)


def fail_first_attempt(envelope, context):
	if context.attempt == 1:
		raise RuntimeError("the ledger refuses the first attempt")
	record(envelope, context)


class DownWhile:
	"""A tracking session whose database cannot be reached while ``outage`` is set."""

	def __init__(self, session, outage):
		self.session, self.outage = session, outage

	def __getattr__(self, name):
		return getattr(self.session, name)

	def claim(self, *args):
		if self.outage.is_set():
			raise TrackingUnavailable("the tracking database is down")
		return self.session.claim(*args)


def owned(member, topic):
	"""Returns how many partitions of ``topic`` the member holds."""
	return len([key for key in member.source.assigned if key[0] == topic])


def assert_each_handled_once(member, tracking, sent):
	"""Waits until every sent event is handled; fails naming the member's pauses if not."""
	handled = wait_for(lambda: len(tracking.effects) >= len(sent), 30)
	stuck = sorted(member.source._paused.items())
	missing = len(sent) - len(tracking.effects)
	assert handled, f"{missing} of {len(sent)} events never handled; the member's pauses: {stuck}"
	assert sorted(tracking.effects) == sorted(sent), "each event handled exactly once"


def stop(*members):
	for member in members:
		if member is not None:
			member.stop()


def publish_to_every_partition(bus, channel, count):
	"""Produces ``count`` events on each partition; returns their ids."""
	producer, sent = Producer({"bootstrap.servers": bus.broker.bootstrap}), []
	for partition in range(PARTITIONS):
		for n in range(count):
			envelope = make_envelope("Item", f"I-{partition}", "created", n=n)
			key, body, headers, _ = wire(envelope)
			producer.produce(
				channel, value=body, key=key.encode(), headers=list(headers), partition=partition
			)
			sent.append(envelope.id)
	producer.flush(10)
	return sent


@pytest.mark.parametrize("strategy", ["cooperative-sticky", "range"])
def test_a_partition_paused_for_an_outage_flows_again_after_it_left_and_came_back(kafka, strategy):
	# Member a pauses all its partitions for an outage; b joins (taking some of them) and
	# leaves again while they are paused, so they come back to a. They must flow again once
	# the outage is over: every event handled exactly once, none left behind.
	bus = KafkaBus(kafka)
	channel, group = bus.channel(), f"rebalance-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(
		group=group, poll_timeout=0.2, commit_interval=0.2, outage_backoff=Backoff(4.0, 1.0, 4.0, 0)
	)
	tracking, outage = MemoryTracking(), threading.Event()
	outage.set()
	a = Member(bus, channel, options, tracking, outage, strategy)
	b = None
	try:
		assert wait_for(lambda: owned(a, channel) == PARTITIONS, 30), "a joined"
		sent = publish_to_every_partition(bus, channel, 3)
		assert wait_for(lambda: a.consumer.stats.totals().deferred >= PARTITIONS, 20), "a paused them all"
		b = Member(bus, channel, options, tracking, outage, strategy)
		assert wait_for(
			lambda: owned(b, channel) and owned(a, channel) + owned(b, channel) == PARTITIONS, 30
		), "b joined"
		b.stop()  # b leaves: its partitions go back to a, which paused them before
		b = None
		assert wait_for(lambda: owned(a, channel) == PARTITIONS, 30), "a owns every partition again"
		outage.clear()
		assert_each_handled_once(a, tracking, sent)
	finally:
		stop(b, a)
	assert bus.lag(group, channel) == 0, "everything handled was committed"


@pytest.mark.parametrize("strategy", ["cooperative-sticky"])
def test_a_retry_partition_paused_until_its_copy_is_due_flows_again_after_it_came_back(kafka, strategy):
	# Each event fails its first attempt; its copy waits in the first retry topic, whose
	# partitions a pauses until the copy is due. b joins and leaves meanwhile, so the paused
	# retry partitions leave a and come back. Every copy must still be handled, once.
	bus = KafkaBus(kafka)
	channel, group = bus.channel(), f"rebalance-retry-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(
		group=group,
		max_attempts=3,
		backoff=Backoff(6.0, 1.0, 6.0, 0),
		poll_timeout=0.2,
		commit_interval=0.2,
	)
	tracking, outage, retries = MemoryTracking(), threading.Event(), retry_topic(group, 1)
	a = Member(bus, channel, options, tracking, outage, strategy, fail_first_attempt)
	b = None
	try:
		assert wait_for(lambda: owned(a, channel) == PARTITIONS and owned(a, retries), 30), "a joined"
		sent = publish_to_every_partition(bus, channel, 1)
		assert wait_for(lambda: any(key[0] == retries for key in a.source._paused), 20), (
			"a paused a retry partition until its copy is due"
		)
		assert wait_for(lambda: a.consumer.stats.totals().retried == len(sent), 10)
		b = Member(bus, channel, options, tracking, outage, strategy, fail_first_attempt)
		assert wait_for(lambda: owned(b, retries), 30), "b took retry partitions"
		b.stop()
		b = None
		assert wait_for(lambda: owned(a, channel) == PARTITIONS, 30), "a owns every partition again"
		assert_each_handled_once(a, tracking, sent)
	finally:
		stop(b, a)
	lags = group_lag(bus.broker.bootstrap, group, [channel, retries])
	assert sum(entry.lag for entry in lags) == 0, f"everything handled was committed: {lags}"
