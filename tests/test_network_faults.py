"""The relay and the consumers through network faults that are not clean outages, against real brokers.

A fault proxy (fault_proxy.FaultProxy) sits between the fabric and the machine's brokers: a link
that stalls and resumes, a blackhole that heals with resets, a half-open connection (the broker
saw the client leave, the client hears nothing for ever), a broker that takes the TCP connection
and never answers the handshake, and a slow link. Timeouts are lowered through the options the
code takes, so a stall of a few seconds outlasts every one of them as a 30-second one would.

What holds: nothing is lost; an event goes out twice only when the broker took it and its
acknowledgement was caught by the fault (at least once), and each document's events keep their
order by first appearance; nothing waits longer than its timeout; the relay is publishing again
within seconds of the network healing; the outbox row says what went wrong.
"""

import json
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from types import SimpleNamespace

import pika
import pytest
from consumer_buses import RABBITMQ_URL, RabbitBus, wire
from fault_proxy import FaultProxy, kafka_behind_proxy_fixture, kafka_link_fixture  # noqa: F401 (fixtures)
from relay_support import fill, first_occurrences, per_key_sequences, status_counts, wait_for
from tcp_proxy import PRODUCE

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.core.errors import TransportUnavailable
from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.outbox.statements import PENDING, PUBLISHED
from cauldron_fabric.core.relay import Relay, RelayOptions
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.testing.kafka_broker import free_port, read_topic
from conftest import connect_db, make_envelope

KEYS, PER_KEY, BATCH = ["A", "B", "C"], 10, 10
EVENTS = len(KEYS) * PER_KEY
MESSAGE_TIMEOUT = 2.0  # Kafka's message.timeout.ms, in seconds
PUBLISH_TIMEOUT = 3.0  # the relay's wait for a batch (RabbitMQ's confirms)


@pytest.fixture
def rabbit_link():
	"""A fault proxy in front of the machine's RabbitMQ, and an exchange with a queue that keeps all."""
	proxy = FaultProxy(free_port(), 5672).start()
	exchange = f"faults.{uuid.uuid4().hex[:8]}"
	connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
	channel = connection.channel()
	channel.exchange_declare(exchange, "topic", durable=True)
	channel.queue_declare(exchange, durable=True)
	channel.queue_bind(exchange, exchange, "#")
	try:
		yield SimpleNamespace(
			proxy=proxy, exchange=exchange, url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
		)
	finally:
		proxy.stop()
		channel.queue_delete(exchange)
		channel.exchange_delete(exchange)
		connection.close()


@contextmanager
def running_relay(outbox_table, transport, topic):
	"""Yields a relay running in a thread over 3 documents x 10 events, in batches of 10.

	The namespace holds the event ids, the cycle reports (seconds since start, report) and
	``elapsed()``; the relay stops once every row is published (or after 60 s).
	"""
	table, sequence = outbox_table
	ids = fill(table, sequence, KEYS, PER_KEY)
	started, reports = time.monotonic(), []
	elapsed = lambda: time.monotonic() - started  # noqa: E731
	options = RelayOptions(
		batch_size=BATCH,
		publish_timeout=PUBLISH_TIMEOUT,
		topic_template=topic,
		idle_wait=0.05,
		backoff=Backoff(0.2, 2, 1, 0),
	)
	relay = Relay(
		SqlOutboxStore(connect_db, table=table, sequence=sequence),
		transport,
		options,
		on_cycle=lambda report: reports.append((elapsed(), report)),
	)
	done = lambda: status_counts(table) == {PUBLISHED: EVENTS}  # noqa: E731
	runner = threading.Thread(target=relay.run, args=(done,), kwargs={"max_seconds": 60}, daemon=True)
	runner.start()
	try:
		yield SimpleNamespace(ids=ids, reports=reports, elapsed=elapsed, table=table, done=done)
	finally:
		runner.join(70)
		relay.close()
	assert not runner.is_alive(), "the relay hung"


def kafka_transport(link, **options):
	return open_transport(link.url, {"message_timeout_ms": int(MESSAGE_TIMEOUT * 1000), **options})


def row_errors(table):
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT last_error FROM `{table}` WHERE status = %s", (PENDING,))
		errors = [error for (error,) in cur.fetchall()]
	conn.close()
	return errors


def failed_reports(run):
	return [(at, report) for at, report in run.reports if report.error]


def check_kafka_topic(link, topic, ids, most_duplicates):
	"""Asserts every event is in the topic, each document in order by first appearance, and at
	most ``most_duplicates`` copies too many; returns how many there are."""
	messages = read_topic(link.broker.bootstrap, topic, EVENTS + most_duplicates, timeout=6)
	copies = Counter(json.loads(m.value())["id"] for m in messages)
	assert set(copies) == set(ids), f"lost: {set(ids) - set(copies)}"
	duplicates = sum(copies.values()) - len(ids)
	assert duplicates <= most_duplicates, copies
	sent = per_key_sequences(messages)
	assert {key: first_occurrences(numbers) for key, numbers in sent.items()} == {
		f"ToDo/{k}": list(range(PER_KEY)) for k in KEYS
	}
	return duplicates


# -- Kafka: the relay ----------------------------------------------------------------------


def test_kafka_link_that_stalls_mid_batch_and_resumes_loses_nothing_and_recovers(kafka_link, outbox_table):
	# The first Produce request reaches the broker, then the link stalls both ways (its answer
	# held) for four message timeouts, then resumes with what was held. librdkafka timed the
	# messages out and bumped its producer epoch on its own, which the broker refuses: every
	# later message of that producer was refused as fenced, and the relay never published again.
	topic = f"faults.stall.{uuid.uuid4().hex[:6]}"
	proxy = kafka_link.proxy
	proxy.fault_after_request(PRODUCE, proxy.stall)
	with running_relay(outbox_table, kafka_transport(kafka_link), topic) as run:
		# The relay waits for a batch message.timeout.ms + 5 s at most; a librdkafka connection
		# set up during the stall waits 10 s for its ApiVersion answer, which can come first.
		assert wait_for(lambda: failed_reports(run), 15), "the relay waits on the stalled link"
		first_at, first = failed_reports(run)[0]
		assert "did not take the message" in first.error or "No acknowledgement" in first.error, first
		time.sleep(max(0.0, 4 * MESSAGE_TIMEOUT - run.elapsed()))
		assert status_counts(run.table) == {PENDING: EVENTS}
		assert all("did not take the message" in error for error in row_errors(run.table) if error)
		proxy.resume()
		healed = run.elapsed()
		assert wait_for(run.done, 10), f"not recovered 10 s after the link resumed: {run.reports[-3:]}"
		recovery = run.elapsed() - healed
	# The first batch reached the broker before the stall; its acknowledgement did not come in
	# time, so it went out again: up to one batch twice, never more.
	duplicates = check_kafka_topic(kafka_link, topic, run.ids, BATCH)
	print(
		f"stall: first error after {first_at:.1f} s, recovered {recovery:.1f} s after resume, {duplicates} duplicates"
	)


def test_kafka_blackhole_mid_batch_that_heals_with_resets_loses_nothing(kafka_link, outbox_table):
	# Packets dropped both ways after the first Produce request; new connections are accepted
	# and never answered. On healing the old connections are reset.
	topic = f"faults.blackhole.{uuid.uuid4().hex[:6]}"
	proxy = kafka_link.proxy
	proxy.fault_after_request(PRODUCE, proxy.blackhole)
	with running_relay(outbox_table, kafka_transport(kafka_link), topic) as run:
		assert wait_for(lambda: failed_reports(run), MESSAGE_TIMEOUT + 5), "the relay waits on the blackhole"
		time.sleep(max(0.0, 3 * MESSAGE_TIMEOUT - run.elapsed()))
		assert status_counts(run.table) == {PENDING: EVENTS}
		proxy.heal()
		healed = run.elapsed()
		assert wait_for(run.done, 10), f"not recovered 10 s after the heal: {run.reports[-3:]}"
		recovery = run.elapsed() - healed
	duplicates = check_kafka_topic(kafka_link, topic, run.ids, BATCH)
	print(f"blackhole: recovered {recovery:.1f} s after heal, {duplicates} duplicates")


def test_kafka_half_open_connection_is_given_up_and_the_events_go_out_on_a_new_one(kafka_link, outbox_table):
	# Right after the first Produce request the broker's side closes and the client's goes
	# silent for ever: only the client's own timeouts can tell.
	topic = f"faults.halfopen.{uuid.uuid4().hex[:6]}"
	proxy = kafka_link.proxy
	proxy.fault_after_request(PRODUCE, proxy.half_open)
	with running_relay(outbox_table, kafka_transport(kafka_link), topic) as run:
		assert wait_for(run.done, 15), f"still not published: {run.reports[-3:]}"
		took = run.elapsed()
	duplicates = check_kafka_topic(kafka_link, topic, run.ids, BATCH)
	print(f"half-open: all published after {took:.1f} s, {duplicates} duplicates")


def test_kafka_broker_that_never_answers_the_handshake_delays_events_with_a_clear_error(
	kafka_link, outbox_table
):
	# TCP connects, the ApiVersion request is never answered. The topic check (its metadata
	# request waits 10 s) fails first; once the broker answers, new connections flow.
	topic = f"faults.silent.{uuid.uuid4().hex[:6]}"
	proxy = kafka_link.proxy
	proxy.answering = False
	with running_relay(outbox_table, kafka_transport(kafka_link), topic) as run:
		assert wait_for(lambda: failed_reports(run), 14), "the relay waits on the silent broker"
		first_at, first = failed_reports(run)[0]
		assert first_at < 13 and "did not answer a metadata request" in first.error, (first_at, first)
		assert status_counts(run.table) == {PENDING: EVENTS}
		assert any("did not answer a metadata request" in (error or "") for error in row_errors(run.table))
		proxy.answering = True
		healed = run.elapsed()
		assert wait_for(run.done, 15), f"not recovered after the broker answered: {run.reports[-3:]}"
		recovery = run.elapsed() - healed
	# Nothing reached the broker before it answered: nothing twice.
	assert check_kafka_topic(kafka_link, topic, run.ids, 0) == 0
	print(f"silent broker: first error after {first_at:.1f} s, recovered {recovery:.1f} s after")


def test_kafka_slow_link_publishes_everything_once(kafka_link, outbox_table):
	# 4 KB/s each way: the batches take seconds each, still within the message timeout.
	topic = f"faults.slow.{uuid.uuid4().hex[:6]}"
	kafka_link.proxy.rate = 4000
	with running_relay(outbox_table, kafka_transport(kafka_link, message_timeout_ms=8000), topic) as run:
		assert wait_for(run.done, 25), f"still not published: {run.reports[-3:]}"
		took = run.elapsed()
		assert not failed_reports(run), failed_reports(run)
	kafka_link.proxy.rate = None
	assert check_kafka_topic(kafka_link, topic, run.ids, 0) == 0
	print(f"slow link: published in {took:.1f} s")


# -- RabbitMQ: the relay -------------------------------------------------------------------


def rabbit_transport(link):
	return open_transport(link.url, {"exchange": link.exchange, "connection_timeout": 2})


def rabbit_copies(link):
	"""Drains the exchange's queue and counts the copies of each event id."""
	connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
	channel, copies = connection.channel(), Counter()
	while True:
		method, _properties, body = channel.basic_get(link.exchange, auto_ack=True)
		if method is None:
			break
		copies[json.loads(body)["id"]] += 1
	connection.close()
	return copies


def check_rabbit_queue(link, ids, most_duplicates):
	time.sleep(0.5)  # the last confirms precede the routing to the queue only by a hair
	copies = rabbit_copies(link)
	assert set(copies) == set(ids), f"lost: {set(ids) - set(copies)}"
	duplicates = sum(copies.values()) - len(ids)
	assert duplicates <= most_duplicates, copies
	return duplicates


@pytest.mark.parametrize("fault", ["stall", "blackhole"])
def test_rabbitmq_link_that_goes_silent_mid_batch_delays_the_batch_and_loses_nothing(
	rabbit_link, outbox_table, fault
):
	# The fault falls after the first 3000 bytes of the publishing connection (handshake,
	# declarations and part of the first batch): its confirms never come.
	proxy = rabbit_link.proxy
	proxy.fault_after_bytes(3000, getattr(proxy, fault))
	with running_relay(outbox_table, rabbit_transport(rabbit_link), "faults.events") as run:
		assert wait_for(lambda: failed_reports(run), PUBLISH_TIMEOUT + 4), (
			"the relay waits on the silent link"
		)
		first_at, first = failed_reports(run)[0]
		assert first_at < PUBLISH_TIMEOUT + 3 and "did not confirm" in first.error, (first_at, first)
		time.sleep(max(0.0, 8 - run.elapsed()))
		assert status_counts(run.table) == {PENDING: EVENTS}
		proxy.resume() if fault == "stall" else proxy.heal()
		healed = run.elapsed()
		assert wait_for(run.done, 8), f"not recovered after the link healed: {run.reports[-3:]}"
		recovery = run.elapsed() - healed
	# What the broker got of the first batch (held by the stall, then delivered) is there twice.
	duplicates = check_rabbit_queue(rabbit_link, run.ids, BATCH)
	print(
		f"rabbitmq {fault}: first error after {first_at:.1f} s, recovered {recovery:.1f} s after, {duplicates} duplicates"
	)


def test_rabbitmq_half_open_publishing_connection_is_replaced(rabbit_link, outbox_table):
	proxy = rabbit_link.proxy
	proxy.fault_after_bytes(3000, proxy.half_open)
	with running_relay(outbox_table, rabbit_transport(rabbit_link), "faults.events") as run:
		assert wait_for(run.done, 12), f"still not published: {run.reports[-3:]}"
		took = run.elapsed()
		errors = [report.error for _, report in failed_reports(run)]
		assert errors and all("did not confirm" in error for error in errors), errors
	duplicates = check_rabbit_queue(rabbit_link, run.ids, BATCH)
	print(f"rabbitmq half-open: all published after {took:.1f} s, {duplicates} duplicates")


def test_rabbitmq_broker_that_never_answers_the_handshake_is_given_up_after_the_connection_timeout(
	rabbit_link, outbox_table
):
	proxy = rabbit_link.proxy
	proxy.answering = False
	with running_relay(outbox_table, rabbit_transport(rabbit_link), "faults.events") as run:
		assert wait_for(lambda: failed_reports(run), PUBLISH_TIMEOUT + 3), (
			"the relay waits on the silent broker"
		)
		first_at, first = failed_reports(run)[0]
		assert first_at < 2 + 2 and "No RabbitMQ broker answered" in first.error, (first_at, first)
		assert any("No RabbitMQ broker answered" in (error or "") for error in row_errors(run.table))
		proxy.answering = True
		healed = run.elapsed()
		assert wait_for(run.done, 8), f"not recovered after the broker answered: {run.reports[-3:]}"
		recovery = run.elapsed() - healed
	assert check_rabbit_queue(rabbit_link, run.ids, 0) == 0
	print(f"rabbitmq silent broker: first error after {first_at:.1f} s, recovered {recovery:.1f} s after")


def test_rabbitmq_slow_link_publishes_everything_once(rabbit_link, outbox_table):
	rabbit_link.proxy.rate = 16000
	with running_relay(outbox_table, rabbit_transport(rabbit_link), "faults.events") as run:
		assert wait_for(run.done, 20), f"still not published: {run.reports[-3:]}"
		took = run.elapsed()
	# A batch slower than the publish timeout goes again: at most that batch twice.
	errors = failed_reports(run)
	duplicates = check_rabbit_queue(rabbit_link, run.ids, BATCH * len(errors))
	print(
		f"rabbitmq slow link: published in {took:.1f} s, {len(errors)} failed cycles, {duplicates} duplicates"
	)


# -- RabbitMQ: the consumer ----------------------------------------------------------------


def test_rabbitmq_consumer_on_a_half_open_connection_reconnects_after_the_heartbeat(rabbit_link):
	# After three events the broker's side closes (it hands the unacknowledged messages out
	# again) and the consumer's side hears nothing: only the heartbeat (2 s here, from the URL;
	# pika checks after heartbeat + 5 s) tells. Acks written meanwhile are lost: those events
	# come back and are skipped as duplicates by tracking, their handlers not run again.
	bus, proxy = RabbitBus(), rabbit_link.proxy
	channel, group = bus.channel(), f"faults-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(
		group=group,
		backoff=Backoff(0.2, 2, 1, 0),
		outage_backoff=Backoff(0.3, 2, 1, 0),
		poll_timeout=0.1,
	)
	source = open_source(
		rabbit_link.url + "?heartbeat=2",
		options,
		["#"],
		broker_options={"exchange": channel, "confirm_timeout": 2, "connection_timeout": 2, "prefetch": 5},
	)
	bus.remember(group, source.retry_delays)
	runs, faulted = [], []

	def handle(envelope, context):
		runs.append(envelope.id)
		if len(runs) == 3:
			faulted.append(time.monotonic())
			proxy.half_open()

	tracking = MemoryTracking()
	consumer = Consumer(source, HandlerTable.from_mapping({"item.*": handle}), tracking.session(), options)
	events = [make_envelope("Item", f"I-{n}", "created", n=n) for n in range(20)]
	bus.publish(channel, [wire(e) for e in events])
	stop = threading.Event()
	running = threading.Thread(target=consumer.run, args=(stop.is_set,), daemon=True)
	try:
		running.start()
		assert wait_for(lambda: len(tracking.processed) == 20, 28), (len(tracking.processed), runs)
		took = time.monotonic() - faulted[0]
	finally:
		stop.set()
		running.join(20)
		consumer.close()
		bus.close()
	counts = consumer.stats.totals()
	assert Counter(runs) == Counter(e.id for e in events), "a handler ran twice or not at all"
	assert (counts.processed, counts.failed, counts.dead_lettered) == (20, 0, 0), counts
	assert took < 2 * (2 + 5) + 3, took
	assert proxy.connections == 2
	print(
		f"consumer half-open: reconnected and done {took:.1f} s after, {counts.duplicates} duplicates skipped"
	)


def test_rabbitmq_consumer_facing_a_broker_that_never_answers_gives_up_within_the_connection_timeout(
	rabbit_link,
):
	rabbit_link.proxy.answering = False
	started = time.monotonic()
	with pytest.raises(TransportUnavailable, match="Cannot consume queue"):
		open_source(
			rabbit_link.url,
			ConsumerOptions(group=f"faults-{uuid.uuid4().hex[:6]}"),
			["#"],
			broker_options={"exchange": rabbit_link.exchange, "connection_timeout": 2},
		)
	assert time.monotonic() - started < 2 + 2


def test_rabbitmq_consumer_reconnecting_to_a_broker_that_never_answers_keeps_trying(rabbit_link):
	# The connection is reset and the broker then takes new connections without ever answering:
	# pika's handshake timeout (no AMQPError) came out of the reconnect in poll() and the
	# consumer stopped with a traceback.
	bus, proxy = RabbitBus(), rabbit_link.proxy
	channel, group = bus.channel(), f"faults-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(group=group, outage_backoff=Backoff(0.3, 2, 1, 0), poll_timeout=0.1)
	source = open_source(
		rabbit_link.url, options, ["#"], broker_options={"exchange": channel, "connection_timeout": 1}
	)
	bus.remember(group, source.retry_delays)
	tracking, crashed = MemoryTracking(), []
	consumer = Consumer(
		source, HandlerTable.from_mapping({"item.*": lambda e, c: None}), tracking.session(), options
	)

	def consume():
		try:
			consumer.run(stop.is_set)
		except BaseException as exc:
			crashed.append(exc)

	events = [make_envelope("Item", f"I-{n}", "created", n=n) for n in range(4)]
	stop = threading.Event()
	running = threading.Thread(target=consume, daemon=True)
	try:
		running.start()
		bus.publish(channel, [wire(e) for e in events[:2]])
		assert wait_for(lambda: len(tracking.processed) == 2, 10)
		proxy.answering = False
		proxy.heal()  # resets the consumer's connection: it reconnects into the silent broker
		time.sleep(3.5)  # three handshake timeouts
		assert not crashed, crashed
		assert proxy.connections >= 3
		bus.publish(channel, [wire(e) for e in events[2:]])
		proxy.answering = True
		assert wait_for(lambda: len(tracking.processed) == 4, 10), (len(tracking.processed), crashed)
	finally:
		stop.set()
		running.join(20)
		consumer.close()
		bus.close()
	assert not crashed, crashed
