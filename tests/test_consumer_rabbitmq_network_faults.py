"""The RabbitMQ consumer through network faults that are not clean outages, against the machine's
RabbitMQ behind a fault proxy (network_fault_support.rabbit_link): a half-open connection, and a
broker that takes the TCP connection and never answers the handshake, at the start or on a
reconnect.

What holds: nothing is lost and no handler runs twice (a redelivery is a duplicate the tracking
skips); the consumer gives up within its connection timeout, and keeps trying without crashing.
"""

import threading
import time
import uuid
from collections import Counter

import pytest
from consumer_buses import RabbitBus, wire
from network_fault_support import rabbit_link_fixture  # noqa: F401 (a fixture)
from relay_support import wait_for

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.core.errors import TransportUnavailable
from cauldron_fabric.core.retry import Backoff
from conftest import make_envelope


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
