"""What the network-fault test modules share: a fault proxy in front of the machine's RabbitMQ,
and a relay running through a fault over 3 documents x 10 events.

Timeouts are lowered through the options the code takes, so a stall of a few seconds outlasts
every one of them as a 30-second one would.
"""

import threading
import time
import uuid
from contextlib import contextmanager
from types import SimpleNamespace

import pika
import pytest
from consumer_buses import RABBITMQ_URL
from fault_proxy import FaultProxy
from relay_support import fill, status_counts

from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.outbox.statements import PENDING, PUBLISHED
from cauldron_fabric.core.relay import Relay, RelayOptions
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.testing.kafka_broker import free_port
from conftest import connect_db

KEYS, PER_KEY, BATCH = ["A", "B", "C"], 10, 10
EVENTS = len(KEYS) * PER_KEY
MESSAGE_TIMEOUT = 2.0  # Kafka's message.timeout.ms, in seconds
PUBLISH_TIMEOUT = 3.0  # the relay's wait for a batch (RabbitMQ's confirms)


@pytest.fixture(name="rabbit_link")
def rabbit_link_fixture():
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


def row_errors(table):
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT last_error FROM `{table}` WHERE status = %s", (PENDING,))
		errors = [error for (error,) in cur.fetchall()]
	conn.close()
	return errors


def failed_reports(run):
	return [(at, report) for at, report in run.reports if report.error]
