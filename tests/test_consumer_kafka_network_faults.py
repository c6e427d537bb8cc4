"""The Kafka consumer through faults of its consuming connection that are not clean outages.

A fault proxy (fault_proxy.FaultProxy) sits between a consumer group member and a Kafka-protocol
broker that tells its clients to connect through it: a link that stalls and resumes, a blackhole
that heals with resets, a half-open connection, a broker that takes TCP connections and never
answers, and a stop during a blackhole (kafka_consumer_fault_support lowers the timeouts).

What holds: nothing is lost (every event's effect is committed and the group's lag reaches 0);
each event's effect is committed once, a redelivery being a duplicate the tracking store skips;
the consumer neither crashes nor logs tracebacks; it is consuming again within seconds of the
network healing, and a stop during a fault takes at most the source's CLOSE_TIMEOUT.
"""

import time
import uuid

import pytest
from consumer_buses import wait_for
from fault_proxy import kafka_behind_proxy_fixture, kafka_link_fixture  # noqa: F401 (fixtures)
from kafka_consumer_fault_support import (
	CLOSE_TIMEOUT,
	FAST_CLIENT,
	SOCKET_TIMEOUT_MS,
	effects_once,
	items,
	link_fixture,  # noqa: F401 (a fixture)
	new_topic,
	publish,
	publish_meanwhile,
	recording,
	running_consumer,
	tracebacks_fixture,  # noqa: F401 (a fixture)
)

from cauldron_fabric.core.consumer import ConsumerOptions, MemoryTracking, open_source
from cauldron_fabric.core.errors import BrokerUnreachable


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
