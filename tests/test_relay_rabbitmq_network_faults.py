"""The relay through network faults that are not clean outages, against the machine's RabbitMQ.

A fault proxy (fault_proxy.FaultProxy) sits between the relay and the broker: a link that
stalls and resumes, a blackhole that heals with resets, a half-open connection (the broker saw
the client leave, the client hears nothing for ever), a broker that takes the TCP connection and
never answers the handshake, and a slow link. Timeouts are lowered through the options the code
takes (network_fault_support), so a stall of a few seconds outlasts every one of them.

What holds: nothing is lost; an event goes out twice only when the broker took it and its
acknowledgement was caught by the fault (at least once); nothing waits longer than its
timeout; the relay is publishing again within seconds of the network healing; the outbox row
says what went wrong.
"""

import json
import time
from collections import Counter

import pika
import pytest
from consumer_buses import RABBITMQ_URL
from network_fault_support import (
	BATCH,
	EVENTS,
	PUBLISH_TIMEOUT,
	failed_reports,
	rabbit_link_fixture,  # noqa: F401 (a fixture)
	row_errors,
	running_relay,
)
from relay_support import status_counts, wait_for

from cauldron_fabric.core.outbox.statements import PENDING
from cauldron_fabric.core.transports import open_transport


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
