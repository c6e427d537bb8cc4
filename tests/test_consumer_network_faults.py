"""The Kafka consumer through network faults that are not clean outages, against a real broker.

A fault proxy (fault_proxy.FaultProxy) sits between a consumer group member and a Kafka-protocol
broker that tells its clients to connect through it: a link that stalls and resumes, a blackhole
that heals with resets, a half-open connection, a broker that takes TCP connections and never
answers, a link that dies between a handler's commit and the offset commit, a retry or
dead-letter copy whose produce hangs, and a stop during a blackhole. The client's timeouts are
lowered through the options the source takes (session 6 s, socket 3 s), so a fault of a few
seconds outlasts them as a longer one would.

What holds: nothing is lost (every event's effect is committed and the group's lag reaches 0);
each event's effect is committed once, a redelivery being a duplicate the tracking store skips;
the consumer neither crashes nor logs tracebacks; it is consuming again within seconds of the
network healing, and a stop during a fault takes at most the source's CLOSE_TIMEOUT.
"""

import json
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
from consumer_buses import Worker, tables_fixture, wait_for, wire  # noqa: F401 (a fixture)
from fault_proxy import FaultProxy, kafka_behind_proxy_fixture, kafka_link_fixture  # noqa: F401 (fixtures)
from tcp_proxy import OFFSET_COMMIT

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.core.consumer import kafka as kafka_source
from cauldron_fabric.core.consumer.kafka_group import group_lag
from cauldron_fabric.core.errors import BrokerUnreachable, PermanentError
from cauldron_fabric.core.retry import Backoff
from conftest import connect_db, make_envelope

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


@pytest.fixture
def link(kafka_link):
	"""The proxied broker (fault_proxy.kafka_link), healed again after the test."""
	return kafka_link


@pytest.fixture
def tracebacks():
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


# -- the consuming connection --------------------------------------------------------------


def test_link_that_stalls_mid_consume_and_resumes_loses_nothing_and_runs_each_effect_once(link, tracebacks):
	proxy, topic, events, runs, faulted = link.proxy, new_topic(link), items(20), [], []

	def stall_after_five(count, _envelope, _context):
		if count == 5:
			faulted.append(time.monotonic())
			proxy.stall()

	publish(link, topic, events[:10])
	with running_consumer(link, topic, recording(runs, stall_after_five)) as state:
		assert wait_for(lambda: faulted, 15)
		publishing = publish_meanwhile(link, topic, events[10:])  # fetched only after the fault
		time.sleep(4)  # longer than the socket timeout (3 s), shorter than the session (6 s)
		handled_in_stall = len(state.tracking.effects)
		proxy.resume()
		resumed = time.monotonic()
		assert wait_for(lambda: len(state.tracking.processed) == 20, 20), len(state.tracking.processed)
		took = time.monotonic() - resumed
		assert wait_for(lambda: state.lag() == 0, 15), "offsets never committed"
	publishing.join(1)
	assert not state.crashed and not tracebacks, (state.crashed, tracebacks)
	effects_once(state, events)
	assert took < 10, took
	print(
		f"stall: {handled_in_stall} handled by the stall's end, all 20 {took:.1f} s after resume;"
		f" {state.consumer.stats.totals().duplicates} duplicates skipped, close {state.close_took:.1f} s"
	)


def test_blackhole_longer_than_the_session_that_heals_with_resets_loses_nothing(link, tracebacks):
	# The group evicts the member during the blackhole; on heal it joins again and reads from the
	# committed offsets: what it handled but had not committed comes back and is a duplicate.
	proxy, topic, events, runs, faulted = link.proxy, new_topic(link), items(20), [], []

	def blackhole_after_five(count, _envelope, _context):
		if count == 5:
			faulted.append(time.monotonic())
			proxy.blackhole()

	publish(link, topic, events[:10])
	with running_consumer(link, topic, recording(runs, blackhole_after_five)) as state:
		assert wait_for(lambda: faulted, 15)
		publishing = publish_meanwhile(link, topic, events[10:])  # fetched only after the fault
		time.sleep(8)
		handled_in_blackhole = len(state.tracking.effects)
		proxy.heal()
		healed = time.monotonic()
		assert wait_for(lambda: len(state.tracking.processed) == 20, 28), len(state.tracking.processed)
		took = time.monotonic() - healed
		assert wait_for(lambda: state.lag() == 0, 15), "offsets never committed"
	publishing.join(1)
	assert not state.crashed and not tracebacks, (state.crashed, tracebacks)
	effects_once(state, events)
	# The rejoin waits out the evicted member id (the broker keeps it in the group, as its leader,
	# and SyncGroup times out on it once or twice): about 15 s here, with socket.timeout.ms 3 s.
	assert took < 25, took
	print(
		f"blackhole: {handled_in_blackhole} handled by its end, all 20 {took:.1f} s after heal; handler runs {len(runs)},"
		f" {state.consumer.stats.totals().duplicates} duplicates skipped, close {state.close_took:.1f} s"
	)


def test_half_open_connection_is_given_up_and_consuming_goes_on_over_a_new_one(link, tracebacks):
	proxy, topic, events, runs, faulted = link.proxy, new_topic(link), items(20), [], []

	def half_open_after_five(count, _envelope, _context):
		if count == 5:
			faulted.append(time.monotonic())
			proxy.half_open()

	publish(link, topic, events)
	connections = proxy.connections
	with running_consumer(link, topic, recording(runs, half_open_after_five)) as state:
		assert wait_for(lambda: len(state.tracking.processed) == 20, 25), len(state.tracking.processed)
		took = time.monotonic() - faulted[0]
		assert wait_for(lambda: state.lag() == 0, 15), "offsets never committed"
	assert not state.crashed and not tracebacks, (state.crashed, tracebacks)
	effects_once(state, events)
	assert proxy.connections > connections
	assert took < 3 * SOCKET_TIMEOUT_MS / 1000 + 6, took
	print(
		f"half-open: all 20 {took:.1f} s after the fault; handler runs {len(runs)},"
		f" {state.consumer.stats.totals().duplicates} duplicates skipped"
	)


def test_broker_that_never_answers_refuses_the_start_within_the_metadata_timeout(link, tracebacks):
	link.proxy.answering = False
	started = time.monotonic()
	with pytest.raises(BrokerUnreachable, match="did not answer a metadata request"):
		open_source(
			link.url,
			ConsumerOptions(group=f"faults-{uuid.uuid4().hex[:6]}"),
			[f"faults.{uuid.uuid4().hex[:8]}"],
			broker_options={"extra": FAST_CLIENT},
		)
	took = time.monotonic() - started
	assert took < 10 + 3, took
	print(f"silent broker at start: refused after {took:.1f} s")


def test_consumer_reconnecting_to_a_broker_that_never_answers_keeps_trying_and_recovers(link, tracebacks):
	proxy, topic, events, runs = link.proxy, new_topic(link), items(8), []
	publish(link, topic, events[:4])
	with running_consumer(link, topic, recording(runs)) as state:
		assert wait_for(lambda: len(state.tracking.processed) == 4, 15)
		proxy.answering = False
		proxy.heal()  # resets every connection: the client reconnects into the silent broker
		time.sleep(7)  # past the session timeout: the member is out of the group
		assert not state.crashed, state.crashed
		silent = proxy.connections
		proxy.answering = True
		answering = time.monotonic()
		publish(link, topic, events[4:])
		assert wait_for(lambda: len(state.tracking.processed) == 8, 25), len(state.tracking.processed)
		took = time.monotonic() - answering
		assert wait_for(lambda: state.lag() == 0, 15), "offsets never committed"
	assert not state.crashed and not tracebacks, (state.crashed, tracebacks)
	effects_once(state, events)
	assert took < 20, took
	print(f"silent broker mid-run: {silent} connections, all 8 handled {took:.1f} s after it answered")


def test_consumer_stopped_during_a_blackhole_closes_within_its_timeout_and_loses_nothing(link, tracebacks):
	# librdkafka's closing commit (and its close) wait for the group coordinator without a
	# limit: a SIGTERM, or a rebuild after a settings change, waited for the network to heal.
	proxy, topic, events, runs, faulted = link.proxy, new_topic(link), items(12), [], []
	tracking, group = MemoryTracking(), f"faults-{uuid.uuid4().hex[:6]}"

	def blackhole_after_five(count, _envelope, _context):
		if count == 5:
			faulted.append(time.monotonic())
			proxy.blackhole()

	publish(link, topic, events)
	with running_consumer(
		link, topic, recording(runs, blackhole_after_five), group=group, tracking=tracking
	) as first:
		assert wait_for(lambda: faulted, 15)
		time.sleep(1)
	assert first.close_took < CLOSE_TIMEOUT + 2, first.close_took
	proxy.heal()
	with running_consumer(link, topic, recording(runs), group=group, tracking=tracking) as second:
		assert wait_for(lambda: len(tracking.processed) == 12, 28), len(tracking.processed)
		assert wait_for(lambda: second.lag() == 0, 15), "offsets never committed"
	assert not first.crashed and not second.crashed and not tracebacks, tracebacks
	effects_once(second, events)
	print(
		f"stopped in a blackhole: closed in {first.close_took:.1f} s; the next member skipped"
		f" {second.consumer.stats.totals().duplicates} duplicates, handler runs {len(runs)}"
	)


# -- between the effect and the offset commit ------------------------------------------------


def test_link_that_dies_between_the_effect_and_the_offset_commit_redelivers_as_a_duplicate(
	link, tables, tracebacks
):
	# Member A (a process, SQL tracking) commits event 5's effect; then its link goes half-open
	# before the offset is stored or committed, and the process dies. Member B gets the
	# partitions from the committed offsets: event 5 (and any uncommitted tail) comes again and
	# is skipped as a duplicate by the tracking store, its effect not made twice.
	tracking, effects = tables
	topic, events, group = new_topic(link), items(12), f"faults-{uuid.uuid4().hex[:6]}"
	publish(link, topic, events)
	bus = SimpleNamespace(url=link.url)
	first = Worker(bus, group, topic, tracking, effects, "A", hold_after=5)
	try:
		first.wait_for("committed", 30)
		link.proxy.half_open()
		first.kill()
		second = Worker(bus, group, topic, tracking, effects, "B")
		try:
			assert wait_for(lambda: effect_count(effects) >= 12, 25), effect_count(effects)
			second.process.terminate()
			stats = json.loads(second.wait_for("stats", 15).split(" ", 1)[1])
		finally:
			second.kill()
	finally:
		first.kill()
	counts = effect_counts(effects)
	assert counts == Counter({e.id: 1 for e in events}), {k: v for k, v in counts.items() if v != 1}
	assert stats["duplicates"] >= 1, stats
	print(f"commit lost: B handled {stats['processed']}, skipped {stats['duplicates']} duplicates")


def effect_counts(effects) -> Counter:
	conn = connect_db()
	try:
		with conn.cursor() as cur:
			cur.execute(f"SELECT event_id, COUNT(*) FROM `{effects}` GROUP BY event_id")
			return Counter(dict(cur.fetchall()))
	finally:
		conn.close()


def effect_count(effects) -> int:
	return sum(effect_counts(effects).values())


def test_offset_commit_whose_answer_is_lost_redelivers_as_a_duplicate(link, tracebacks):
	proxy, topic, events, runs, faulted = link.proxy, new_topic(link), items(12), [], []

	def arm_after_five(count, _envelope, _context):
		if count == 5:
			proxy.fault_after_request(
				OFFSET_COMMIT, lambda: (faulted.append(time.monotonic()), proxy.stall())
			)

	publish(link, topic, events)
	with running_consumer(link, topic, recording(runs, arm_after_five)) as state:
		assert wait_for(lambda: faulted, 15)
		time.sleep(8)
		proxy.heal()
		assert wait_for(lambda: len(state.tracking.processed) == 12, 25), len(state.tracking.processed)
		assert wait_for(lambda: state.lag() == 0, 15), "offsets never committed"
	totals = state.consumer.stats.totals()
	assert not state.crashed and not tracebacks, (state.crashed, tracebacks)
	effects_once(state, events)
	print(f"commit answer lost: handler runs {len(runs)}, {totals.duplicates} duplicates skipped")


# -- retry and dead-letter copies ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["flaky", "refused"])
def test_copy_whose_produce_hangs_defers_the_event_and_it_is_copied_once_the_broker_answers(
	link, tracebacks, monkeypatch, mode
):
	# The source's producer connects at its first copy: the broker takes that connection and
	# never answers, while the consuming connection flows. The copy's publish gives up after
	# its timeout (lowered here from 15 s to 5 s), the event waits as in an outage, and once
	# the broker answers again it is copied (retried or dead-lettered) and settled once.
	monkeypatch.setattr(kafka_source, "PUBLISH_TIMEOUT", 5.0)
	proxy, topic, runs, letters, hung = link.proxy, new_topic(link), [], [], []
	events = [*items(3), make_envelope("Item", "I-9", "created", mode=mode, n=9)]

	def handle(envelope, context):
		runs.append(envelope.id)
		mode_of = envelope.data.payload["mode"]
		if mode_of != "good" and not hung:
			hung.append(time.monotonic())
			proxy.answering = False  # from now until set back: the copy's connection never answers
		if mode_of == "flaky" and context.attempt == 1:
			raise ConnectionError("the ledger service blinked")
		if mode_of == "refused":
			raise PermanentError("item 9 is for another company")
		context.transaction.append(envelope.id)

	publish(link, topic, events)
	with running_consumer(link, topic, handle) as state:
		state.consumer.outcomes.on_dead_letter = letters.append
		assert wait_for(lambda: hung, 15)
		time.sleep(7)
		assert not state.crashed, state.crashed
		proxy.answering = True
		answering = time.monotonic()
		if mode == "flaky":
			assert wait_for(lambda: len(state.tracking.processed) == 4, 25), len(state.tracking.processed)
		else:
			assert wait_for(lambda: letters, 25), "never dead-lettered"
		took = time.monotonic() - answering
	totals = state.consumer.stats.totals()
	assert not state.crashed and not tracebacks, (state.crashed, tracebacks)
	effects_once(state, events if mode == "flaky" else events[:3])
	if mode == "refused":
		assert len(letters) == 1, letters
	assert took < 15, took
	print(
		f"{mode} copy hung: settled {took:.1f} s after the broker answered ({time.monotonic() - hung[0]:.1f} s"
		f" after the hang); deferred {totals.deferred}, handler runs {len(runs)}, letters {len(letters)}"
	)
