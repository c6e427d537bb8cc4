"""The relay through broker outages and lost database connections, against real ones.

Events are delayed, never lost, and each document keeps its order once the broker is back.
"""

import json
import threading
import time
import uuid
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from relay_support import (
	drain,
	fill,
	first_occurrences,
	per_key_sequences,
	pipelined_relay,
	published_count,
	status_counts,
	wait_for,
)

from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.outbox.statements import PENDING, PUBLISHED
from cauldron_fabric.core.relay import Relay, RelayOptions
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.testing.kafka_broker import KafkaBroker, read_topic
from conftest import connect_db


@contextmanager
def relay_through_outage(outbox_table, sessions, name):
	"""Yields a relay on ``sessions`` connections with 3 documents x 30 events queued, broker down.

	The namespace holds the broker, the relay, its cycle reports, the event ids and the topic.
	"""
	table, sequence = outbox_table
	topic = f"relay.{name}.{uuid.uuid4().hex[:6]}"
	with KafkaBroker() as broker:
		# No topic creation: its metadata request would wait 10 s for the stopped broker.
		transport = open_transport(broker.url, {"message_timeout_ms": 1500, "auto_create_topics": False})
		reports = []
		options = RelayOptions(
			batch_size=20, topic_template=topic, idle_wait=0.05, backoff=Backoff(0.2, 2, 1, 0)
		)
		relay = pipelined_relay(outbox_table, transport, sessions, options, on_cycle=reports.append)
		broker.stop()
		ids = fill(table, sequence, ["A", "B", "C"], 30)
		try:
			yield SimpleNamespace(broker=broker, relay=relay, reports=reports, ids=ids, topic=topic)
		finally:
			relay.close()


def test_pipelined_relay_rides_out_a_broker_outage_in_order(outbox_table):
	# The four-session pipeline (claims and settling in the background) through an outage:
	# batches fail and are held back per key, then everything goes out once the broker is back.
	table, _ = outbox_table
	with relay_through_outage(outbox_table, 4, "pipe-outage") as run:
		run.relay.run(lambda: any(r.retrying for r in run.reports), max_seconds=30)
		assert status_counts(table) == {PENDING: len(run.ids)}  # nothing lost, nothing published
		run.broker.start()
		run.relay.run(lambda: published_count(run.reports) >= len(run.ids), max_seconds=60)
		assert status_counts(table) == {PUBLISHED: len(run.ids)}
		messages = read_topic(run.broker.bootstrap, run.topic, len(run.ids))
		assert per_key_sequences(messages) == {f"ToDo/{k}": list(range(30)) for k in "ABC"}


@pytest.mark.parametrize("sessions", [1, 4])
def test_one_long_run_publishes_a_failed_key_once_the_broker_is_back(outbox_table, sessions):
	# A running relay (bench fabric relay) rides out an outage within one run(): a key that
	# failed is held back behind its failure only while that failure is in the pipeline.
	table, _ = outbox_table
	with relay_through_outage(outbox_table, sessions, "long-run") as run:
		done = lambda: published_count(run.reports) >= len(run.ids)  # noqa: E731
		runner = threading.Thread(target=run.relay.run, args=(done,), kwargs={"max_seconds": 60})
		runner.start()
		assert wait_for(lambda: any(r.retrying for r in run.reports), 30), "the outage was never noticed"
		run.broker.start()
		runner.join(70)
		assert status_counts(table) == {PUBLISHED: len(run.ids)}
		sent = per_key_sequences(read_topic(run.broker.bootstrap, run.topic, len(run.ids)))
		assert {key: first_occurrences(numbers) for key, numbers in sent.items()} == {
			f"ToDo/{k}": list(range(30)) for k in "ABC"
		}


def attempts_and_errors(table):
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT attempts, last_error, next_attempt_at FROM `{table}` ORDER BY name")
		rows = cur.fetchall()
	conn.close()
	return rows


def test_events_held_back_unsent_are_not_counted_as_attempts(outbox_table):
	# The second batch, claimed while the first was with the broker, held later events of the
	# same documents; the first failed, so they were never produced, yet each got attempts + 1
	# (the Event Log's count, and their own backoff once they fail themselves).
	table, _ = outbox_table
	with relay_through_outage(outbox_table, 2, "held-back") as run:
		run.relay.run(lambda: any(r.retrying for r in run.reports), max_seconds=30)
		rows = attempts_and_errors(table)
		assert [attempts for attempts, _, _ in rows[:20]] == [1] * 20  # sent, and failed
		held = rows[20:40]
		assert all(error.startswith("Held back") for _, error, _ in held)
		assert [attempts for attempts, _, _ in held] == [0] * 20
		run.broker.start()
		run.relay.run(lambda: published_count(run.reports) >= len(run.ids), max_seconds=60)
		assert status_counts(table) == {PUBLISHED: len(run.ids)}
		rows = attempts_and_errors(table)
		assert [(error, retry_at) for _, error, retry_at in rows] == [(None, None)] * len(run.ids)
		assert [attempts for attempts, _, _ in rows[20:]] == [1] * (len(run.ids) - 20)


class KilledBeforeCommit(SqlOutboxStore):
	"""The MariaDB store whose connection is killed (as a failover would) before its first settle commits."""

	armed = True

	def _update_from_rows(self, *args, **kwargs):
		super()._update_from_rows(*args, **kwargs)
		if self.armed:
			self.armed = False
			killer = connect_db()
			with killer.cursor() as cur:
				cur.execute(f"KILL {self.connection.thread_id()}")
			killer.close()


def test_a_connection_lost_at_commit_delays_the_batch_and_loses_nothing(outbox_table):
	table, sequence = outbox_table
	fill(table, sequence, ["A", "B"], 3)
	store = KilledBeforeCommit(connect_db, table=table, sequence=sequence)
	options = RelayOptions(idle_wait=0.05, topic_template="relay.kill", backoff=Backoff(0.05, 2, 0.2, 0))
	relay = Relay(store, open_transport("memory://relay-kill", {}), options)
	relay.run(lambda: status_counts(table) == {PUBLISHED: 6}, max_seconds=15)
	assert not store.armed, "the connection was never killed"
	assert status_counts(table) == {PUBLISHED: 6}
	relay.close()


class ReadOnlyAtFirstClaim(SqlOutboxStore):
	"""The MariaDB store whose session turns read-only (a primary demoted in a failover) before
	its first claim: the claim's reads go through, its settle's UPDATE is refused."""

	armed = True

	def claim(self, limit, ahead=()):
		if self.armed:
			self.armed = False
			self.session.rollback()
			with self.connection.cursor() as cur:
				cur.execute("SET SESSION TRANSACTION READ ONLY")
		return super().claim(limit, ahead)


def test_a_read_only_database_delays_the_batch_and_loses_nothing(outbox_table):
	# The settle's UPDATE got error 1792 (read-only transaction): not a lost connection, so it
	# was no retryable error, and the relay stopped with it.
	table, sequence = outbox_table
	fill(table, sequence, ["A", "B"], 3)
	store = ReadOnlyAtFirstClaim(connect_db, table=table, sequence=sequence)
	options = RelayOptions(idle_wait=0.05, topic_template="relay.readonly", backoff=Backoff(0.05, 2, 0.2, 0))
	errors = []
	relay = Relay(
		store,
		open_transport(f"memory://relay-readonly-{uuid.uuid4().hex}", {}),
		options,
		on_cycle=lambda report: errors.append(report.error) if report.error else None,
	)
	try:
		relay.run(lambda: status_counts(table) == {PUBLISHED: 6}, max_seconds=15)
	finally:
		relay.close()  # (a relay that stopped on the error leaves its read-only transaction open)
	assert not store.armed, "the session never turned read-only"
	assert any("refused a statement for now" in error and "READ ONLY" in error for error in errors), errors
	assert status_counts(table) == {PUBLISHED: 6}


class KilledAtEverySettle(SqlOutboxStore):
	"""The MariaDB store whose connection is killed before each settle commits, counting claims."""

	claims = 0

	def claim(self, limit, ahead=()):
		type(self).claims += 1
		return super().claim(limit, ahead)

	def _update_from_rows(self, *args, **kwargs):
		super()._update_from_rows(*args, **kwargs)
		killer = connect_db()
		with killer.cursor() as cur:
			cur.execute(f"KILL {self.connection.thread_id()}")
		killer.close()


def test_a_batch_that_cannot_be_settled_backs_off_instead_of_republishing_in_a_loop(outbox_table):
	# Settling failed, so nothing was settled: the relay claimed and published the same batch
	# again at once, flooding the broker with duplicates for as long as the failure lasted.
	table, sequence = outbox_table
	fill(table, sequence, ["A"], 5)
	store = KilledAtEverySettle(connect_db, table=table, sequence=sequence)
	options = RelayOptions(idle_wait=0.05, topic_template="relay.unsettled", backoff=Backoff(0.5, 2, 2, 0))
	relay = Relay(store, open_transport(f"memory://relay-unsettled-{uuid.uuid4().hex}", {}), options)
	relay.run(lambda: False, max_seconds=2.5)
	relay.close()
	# Backing off 0.5, 1 and 2 s leaves room for four batches at most.
	assert 1 <= KilledAtEverySettle.claims <= 4, KilledAtEverySettle.claims
	assert status_counts(table) == {PENDING: 5}


def test_broker_outage_delays_events_and_loses_none(outbox_table):
	table, sequence = outbox_table
	topic = f"relay.outage.{uuid.uuid4().hex[:6]}"
	with KafkaBroker() as broker:
		transport = open_transport(broker.url, {"message_timeout_ms": 1500})
		store = SqlOutboxStore(connect_db, table=table, sequence=sequence)
		options = RelayOptions(batch_size=100, topic_template=topic, backoff=Backoff(0.2, 2, 1, 0))
		relay = Relay(store, transport, options)
		before = fill(table, sequence, ["A", "B"], 10)
		assert drain(relay) == 0
		broker.stop()
		during = fill(table, sequence, ["A", "B"], 10)
		report = relay.relay_pending_events()
		assert report.claimed == 20 and report.published == 0 and report.retrying == 20 and report.stalled
		conn = connect_db()
		with conn.cursor() as cur:
			cur.execute(f"SELECT status, attempts, last_error FROM `{table}` WHERE status = %s", (PENDING,))
			rows = cur.fetchall()
		conn.close()
		assert len(rows) == 20 and all(
			attempts == 1 and "did not take the message" in error for _, attempts, error in rows
		)
		broker.start()
		time.sleep(1.2)  # let the retry time pass
		assert drain(relay) == 0
		messages = read_topic(broker.bootstrap, topic, len(during))
		# The restarted in-memory broker lost what it had; everything sent after the outage arrived.
		assert {json.loads(m.value())["id"] for m in messages} >= set(during)
		assert per_key_sequences(messages)["ToDo/A"][-10:] == list(range(10))
		assert status_counts(table) == {PUBLISHED: len(before) + len(during)}
		relay.close()
