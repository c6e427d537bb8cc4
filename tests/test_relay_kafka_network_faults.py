"""The relay through network faults that are not clean outages, against a real Kafka-protocol broker.

A fault proxy (fault_proxy.FaultProxy) sits between the relay and the broker: a link that
stalls and resumes, a blackhole that heals with resets, a half-open connection (the broker saw
the client leave, the client hears nothing for ever), a broker that takes the TCP connection and
never answers the handshake, and a slow link. Timeouts are lowered through the options the code
takes (network_fault_support), so a stall of a few seconds outlasts every one of them.

What holds: nothing is lost; an event goes out twice only when the broker took it and its
acknowledgement was caught by the fault (at least once), and each document's events keep
their order by first appearance; nothing waits longer than its timeout; the relay is publishing
again within seconds of the network healing; the outbox row says what went wrong.
"""

import json
import time
import uuid
from collections import Counter

from fault_proxy import kafka_behind_proxy_fixture, kafka_link_fixture  # noqa: F401 (fixtures)
from network_fault_support import (
	BATCH,
	EVENTS,
	KEYS,
	MESSAGE_TIMEOUT,
	PER_KEY,
	failed_reports,
	row_errors,
	running_relay,
)
from relay_support import first_occurrences, per_key_sequences, status_counts, wait_for
from tcp_proxy import PRODUCE

from cauldron_fabric.core.outbox.statements import PENDING
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.testing.kafka_broker import read_topic


def kafka_transport(link, **options):
	return open_transport(link.url, {"message_timeout_ms": int(MESSAGE_TIMEOUT * 1000), **options})


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
