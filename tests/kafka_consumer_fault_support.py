"""What the Kafka consumer's network-fault test modules share: the proxied broker, topics and
events, and a consumer running through the proxy with fast timeouts.

The client's timeouts are lowered through the options the source takes (session 6 s, socket
3 s), so a fault of a few seconds outlasts them as a longer one would.
"""

import logging
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from consumer_buses import wire

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.core.consumer.kafka_group import group_lag
from cauldron_fabric.core.retry import Backoff
from conftest import make_envelope

PARTITIONS = 2
CLOSE_TIMEOUT = 10  # the source's CLOSE_TIMEOUT: how long closing may wait for Kafka
CLOSE_WAIT = 25  # how long the tests wait for a close before calling it hung
SOCKET_TIMEOUT_MS = 3000
# librdkafka settings of every client of the source (producer, admin client, consumer).
FAST_CLIENT = {
	"socket.timeout.ms": SOCKET_TIMEOUT_MS,
	"api.version.request.timeout.ms": SOCKET_TIMEOUT_MS,
	"reconnect.backoff.ms": 100,
	"reconnect.backoff.max.ms": 1000,
}


@pytest.fixture(name="link")
def link_fixture(kafka_link):
	"""The proxied broker (fault_proxy.kafka_link), healed again after the test."""
	return kafka_link


@pytest.fixture(name="tracebacks")
def tracebacks_fixture():
	"""Collects the log records of the fabric that carry a traceback."""
	found: list[logging.LogRecord] = []
	handler = logging.Handler()
	handler.emit = lambda record: found.append(record) if record.exc_info else None
	logger = logging.getLogger("cauldron_fabric")
	logger.addHandler(handler)
	yield found
	logger.removeHandler(handler)


def new_topic(link) -> str:
	topic = f"faults.{uuid.uuid4().hex[:8]}"
	admin = AdminClient({"bootstrap.servers": link.broker.bootstrap, **FAST_CLIENT})
	for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
		future.result(10)
	return topic


def publish(link, topic, events, wait=10) -> None:
	producer = Producer({"bootstrap.servers": link.broker.bootstrap})
	for envelope in events:
		key, body, headers, _ = wire(envelope)
		producer.produce(topic, value=body, key=key.encode(), headers=list(headers))
		assert producer.flush(wait) == 0  # one record batch each: fetched a few at a time


def publish_meanwhile(link, topic, events) -> threading.Thread:
	"""Publishes in a thread through the proxy: while a fault lasts, the events land after it."""
	publishing = threading.Thread(
		target=publish, args=(link, topic, events), kwargs={"wait": 40}, daemon=True
	)
	publishing.start()
	return publishing


def items(count, mode="good"):
	return [make_envelope("Item", f"I-{n % 3}", "created", mode=mode, n=n) for n in range(count)]


@contextmanager
def running_consumer(link, topic, handle, *, group=None, tracking=None, max_attempts=3, **source_options):
	"""Yields a consumer of ``topic`` through the proxy, running in a thread, with fast timeouts.

	The namespace holds the consumer, its tracking (``tracking.effects``: one entry per committed
	effect), what the consumer raised (``crashed``) and ``lag()``, the group's committed lag.
	"""
	group = group or f"faults-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(
		group=group,
		max_attempts=max_attempts,
		backoff=Backoff(0.2, 2, 1, 0),
		outage_backoff=Backoff(0.3, 2, 1, 0),
		poll_timeout=0.1,
		batch_size=5,
	)
	broker_options = {
		"session_timeout_ms": 6000,
		"topic_partitions": PARTITIONS,
		"message_timeout_ms": 3000,
		"extra": FAST_CLIENT,
		# Small fetches and no prefetching: a fault cuts the stream mid-consume, not after it.
		"consumer_extra": {
			**FAST_CLIENT,
			"heartbeat.interval.ms": 1000,
			"max.partition.fetch.bytes": 512,
			"queued.min.messages": 1,
			"fetch.queue.backoff.ms": 50,
		},
		**source_options,
	}
	source = open_source(link.url, options, [topic], broker_options=broker_options)
	tracking, crashed, stop = tracking or MemoryTracking(), [], threading.Event()
	consumer = Consumer(source, HandlerTable.from_mapping({"item.*": handle}), tracking.session(), options)

	def consume():
		try:
			consumer.run(stop.is_set)
		except BaseException as exc:
			crashed.append(exc)

	running = threading.Thread(target=consume, daemon=True)
	running.start()

	def lag():
		entries = group_lag(link.broker.bootstrap, group, [topic], {"extra": FAST_CLIENT}, prefixes=[])
		return sum(e.lag for e in entries) if all(e.lag is not None for e in entries) else None

	state = SimpleNamespace(consumer=consumer, tracking=tracking, crashed=crashed, lag=lag, group=group)
	try:
		yield state
	finally:
		stop.set()
		running.join(30)
		started = time.monotonic()
		closing = threading.Thread(target=consumer.close, daemon=True)
		closing.start()
		closing.join(CLOSE_WAIT)
		state.close_took = time.monotonic() - started
	assert not running.is_alive(), "the consumer hung"
	assert not closing.is_alive(), f"closing the consumer hung (over {state.close_took:.0f} s)"


def effects_once(state, events):
	"""Asserts that every event's effect was committed exactly once."""
	counts = Counter(state.tracking.effects)
	assert counts == Counter(e.id for e in events), {k: v for k, v in counts.items() if v != 1}


def recording(runs, on_run=None):
	"""Returns a handler that records each run and commits the event's id as its effect."""

	def handle(envelope, context):
		runs.append(envelope.id)
		if on_run is not None:
			on_run(len(runs), envelope, context)
		context.transaction.append(envelope.id)

	return handle
