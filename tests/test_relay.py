"""The relay against a real Kafka-protocol broker and a real MariaDB outbox.

Ordering per document, broker outage and recovery, a relay killed with SIGKILL mid-batch,
and several relays sharing one outbox.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from cauldron_fabric.core.errors import TransportUnavailable
from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.outbox.statements import PENDING, PUBLISHED
from cauldron_fabric.core.ports import OutboxAppend
from cauldron_fabric.core.relay import Relay, RelayOptions
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.core.transports.kafka import KafkaTransport
from cauldron_fabric.testing.kafka_broker import KafkaBroker, read_topic
from conftest import connect_db, make_envelope

WORKER = Path(__file__).with_name("relay_worker.py")


def fill(table, sequence, keys, per_key, chunk=500):
	"""Appends per_key events for every key, interleaved, and returns their ids in order."""
	store = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	entries = [
		OutboxAppend(make_envelope("ToDo", key, "updated", n=n)) for n in range(per_key) for key in keys
	]
	for start in range(0, len(entries), chunk):
		store.append(entries[start : start + chunk])
		store.commit()
	store.close()
	return [e.envelope.id for e in entries]


def status_counts(table):
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT status, COUNT(*) FROM `{table}` GROUP BY status")
		counts = dict(cur.fetchall())
	conn.close()
	return counts


def drain(relay, limit_seconds=60):
	deadline = time.monotonic() + limit_seconds
	while relay.store.pending_count() and time.monotonic() < deadline:
		relay.relay_pending_events()
	return relay.store.pending_count()


def pipelined_relay(outbox_table, transport, sessions, options, on_cycle=None, store_class=SqlOutboxStore):
	"""Returns a relay working on ``sessions`` connections to the outbox table (see Pipeline)."""
	table, sequence = outbox_table
	store, *more = (store_class(connect_db, table=table, sequence=sequence) for _ in range(sessions))
	return Relay(store, transport, options, on_cycle=on_cycle, more_stores=more)


def per_key_sequences(messages):
	"""Returns, for each document, the payload counters in the order Kafka holds them."""
	sequences = defaultdict(list)
	for message in messages:
		body = json.loads(message.value())
		sequences[message.key().decode()].append(body["data"]["payload"]["n"])
	return sequences


def test_relay_publishes_each_document_in_order(kafka, outbox_table):
	table, sequence = outbox_table
	topic = f"relay.order.{uuid.uuid4().hex[:6]}"
	ids = fill(table, sequence, ["A", "B", "C"], 40)
	store = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	transport = open_transport(kafka.url, {"topic_partitions": 3})
	relay = Relay(store, transport, RelayOptions(batch_size=50, topic_template=topic))
	assert drain(relay) == 0
	messages = read_topic(kafka.bootstrap, topic, len(ids))
	assert sorted(json.loads(m.value())["id"] for m in messages) == sorted(ids)
	assert {key: seq for key, seq in per_key_sequences(messages).items()} == {
		f"ToDo/{k}": list(range(40)) for k in "ABC"
	}
	headers = dict(messages[0].headers())
	assert (
		headers["ce_specversion"] == b"1.0"
		and headers["ce_id"].decode() == json.loads(messages[0].value())["id"]
	)
	assert status_counts(table) == {PUBLISHED: 120}
	relay.close()


def test_an_event_with_nan_beside_a_huge_integer_goes_out_as_json_and_stops_nothing(kafka, outbox_table):
	# Such a payload is refused by the fast encoder; the fallback wrote NaN, which is no JSON:
	# the relay failed to read the row back and stopped on it for every later event.
	table, sequence = outbox_table
	topic = f"relay.nan.{uuid.uuid4().hex[:6]}"
	odd = make_envelope("ToDo", "A", "updated", n=-1, big=2**70, ratio=float("nan"))
	store = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	store.append([OutboxAppend(odd)])
	store.commit()
	ids = [odd.id, *fill(table, sequence, ["A", "B"], 3)]
	relay = Relay(store, open_transport(kafka.url), RelayOptions(topic_template=topic))
	assert drain(relay) == 0
	relay.close()
	assert status_counts(table) == {PUBLISHED: len(ids)}
	messages = read_topic(kafka.bootstrap, topic, len(ids))
	bodies = [json.loads(m.value(), parse_constant=lambda token: pytest.fail(token)) for m in messages]
	assert [b["id"] for b in bodies if b["data"]["entityId"] == "A"] == [odd.id, *ids[1::2]]
	(sent,) = [b for b in bodies if b["id"] == odd.id]
	assert sent["data"]["payload"] == {"n": -1, "big": 2**70, "ratio": None}


@pytest.mark.parametrize("sessions", [2, 3, 4])
def test_pipelined_relay_keeps_each_document_in_order(kafka, outbox_table, sessions):
	# Two sessions overlap claims with the broker, three settle in the background, four also
	# claim in the background: every shape must publish everything once per key in order.
	table, sequence = outbox_table
	topic = f"relay.pipe{sessions}.{uuid.uuid4().hex[:6]}"
	ids = fill(table, sequence, ["A", "B", "C", "D"], 60)
	published = []
	relay = pipelined_relay(
		outbox_table,
		open_transport(kafka.url, {"topic_partitions": 3}),
		sessions,
		RelayOptions(batch_size=25, topic_template=topic, idle_wait=0.05),
		on_cycle=lambda report: published.append(report.published),
	)
	relay.run(lambda: sum(published) >= len(ids), max_seconds=60)
	messages = read_topic(kafka.bootstrap, topic, len(ids))
	assert sorted(json.loads(m.value())["id"] for m in messages) == sorted(ids)
	assert per_key_sequences(messages) == {f"ToDo/{k}": list(range(60)) for k in "ABCD"}
	assert status_counts(table) == {PUBLISHED: len(ids)}
	relay.close()


class FirstWaitRaises(KafkaTransport):
	"""The Kafka transport whose first batch fails while the relay waits on it, nothing produced."""

	armed = True

	def publish_async(self, messages):
		if not self.armed:
			return super().publish_async(messages)
		self.armed = False

		def wait(timeout):
			raise TransportUnavailable("the connection broke while waiting for acknowledgements")

		return wait


def test_a_batch_whose_conclusion_fails_keeps_later_events_of_its_documents_behind(kafka, outbox_table):
	# The failed batch was released but never marked concluded: the batch claimed behind it
	# produced the later events of its documents, which landed before the failed ones came back.
	table, sequence = outbox_table
	topic = f"relay.conclude.{uuid.uuid4().hex[:6]}"
	ids = fill(table, sequence, ["A", "B", "C"], 30)
	reports = []
	transport = FirstWaitRaises(kafka.bootstrap, {"topic_partitions": 3})
	options = RelayOptions(
		batch_size=20, topic_template=topic, idle_wait=0.05, backoff=Backoff(0.05, 2, 0.2, 0)
	)
	relay = pipelined_relay(outbox_table, transport, 2, options, on_cycle=reports.append)
	relay.run(lambda: published_count(reports) >= len(ids), max_seconds=60)
	relay.close()
	assert not transport.armed and status_counts(table) == {PUBLISHED: len(ids)}
	sent = per_key_sequences(read_topic(kafka.bootstrap, topic, len(ids)))
	assert {key: first_occurrences(numbers) for key, numbers in sent.items()} == {
		f"ToDo/{k}": list(range(30)) for k in "ABC"
	}


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


def published_count(reports):
	return sum(r.published for r in reports)


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


def first_occurrences(sequence):
	"""Returns the sequence without repeats, each value where it first appeared."""
	return list(dict.fromkeys(sequence))


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


class CountingStore(SqlOutboxStore):
	"""The MariaDB store, counting its claims."""

	claims = 0

	def claim(self, limit, ahead=()):
		type(self).claims += 1
		return super().claim(limit, ahead)


def test_idle_pipelined_relay_waits_instead_of_polling(kafka, outbox_table):
	relay = pipelined_relay(
		outbox_table,
		open_transport(kafka.url),
		4,
		RelayOptions(idle_wait=0.25, topic_template="relay.idle"),
		store_class=CountingStore,
	)
	CountingStore.claims = 0
	relay.run(lambda: False, max_seconds=1.0)
	# One claim per idle wait (about four in a second), not a busy loop of claims.
	assert 1 <= CountingStore.claims <= 8, CountingStore.claims
	relay.close()


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


def all_ids_seen(ids):
	"""Returns a read_topic stop condition: every id seen at least once (duplicates allowed)."""
	missing, checked = set(ids), [0]

	def done(messages):
		for message in messages[checked[0] :]:
			missing.discard(json.loads(message.value())["id"])
		checked[0] = len(messages)
		return not missing

	return done


def start_worker(table, sequence, bootstrap, topic, batch=500, *extra):
	process = subprocess.Popen(
		[sys.executable, str(WORKER), table, sequence, bootstrap, topic, str(batch), *map(str, extra)],
		stdout=subprocess.PIPE,
		stderr=subprocess.PIPE,
		text=True,
		env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
	)
	assert process.stdout.readline().strip() == "ready", process.stderr.read()
	return process


def wait_for(condition, timeout, interval=0.05):
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		if condition():
			return True
		time.sleep(interval)
	return False


@pytest.mark.slow
def test_relay_killed_mid_batch_loses_nothing(kafka, outbox_table):
	table, sequence = outbox_table
	topic = f"relay.kill.{uuid.uuid4().hex[:6]}"
	ids = fill(table, sequence, [f"D{i}" for i in range(20)], 500)
	victim = start_worker(table, sequence, kafka.bootstrap, topic, batch=500)
	assert wait_for(lambda: status_counts(table).get(PUBLISHED, 0) >= 1000, 60)
	victim.send_signal(signal.SIGKILL)
	victim.wait(10)
	counts = status_counts(table)
	assert counts.get(PENDING, 0) > 0, "the relay finished before it was killed; the test proved nothing"
	assert set(counts) <= {PENDING, PUBLISHED}
	survivor = start_worker(table, sequence, kafka.bootstrap, topic)
	assert wait_for(lambda: status_counts(table) == {PUBLISHED: len(ids)}, 120)
	survivor.terminate()
	survivor.wait(20)
	messages = read_topic(kafka.bootstrap, topic, len(ids), timeout=60, until=all_ids_seen(ids))
	assert {json.loads(m.value())["id"] for m in messages} == set(ids)
	for key, sequence_seen in per_key_sequences(messages).items():
		# A batch in flight when the relay died may appear twice; order by first appearance holds.
		first_seen = list(dict.fromkeys(sequence_seen))
		assert first_seen == list(range(500)), key


def locked_count(table):
	"""Counts the Pending rows some transaction holds locked (a fresh one cannot lock them)."""
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT COUNT(*) FROM `{table}` WHERE status = %s", (PENDING,))
		(pending,) = cur.fetchone()
		cur.execute(
			f"SELECT COUNT(*) FROM (SELECT name FROM `{table}` WHERE status = %s FOR UPDATE SKIP LOCKED) free",
			(PENDING,),
		)
		(free,) = cur.fetchone()
	conn.rollback()
	conn.close()
	return pending - free


def freeze_holding_a_claim(process, table, tries=20):
	"""Stops ``process`` (SIGSTOP) at a moment it holds claimed rows; True when that happened."""
	for _ in range(tries):
		process.send_signal(signal.SIGSTOP)
		if locked_count(table):
			return True
		process.send_signal(signal.SIGCONT)
		time.sleep(0.05)
	return False


@pytest.mark.slow
def test_a_frozen_relay_gives_up_its_batch_to_the_other_relays(kafka, outbox_table):
	# A relay that stops without dying (SIGSTOP, a paused container or VM, a network partition)
	# keeps its connections open: the server must not keep its claimed rows locked, and every
	# later event of their documents waiting behind them, for wait_timeout (8 hours by default).
	table, sequence = outbox_table
	topic = f"relay.frozen.{uuid.uuid4().hex[:6]}"
	ids = fill(table, sequence, [f"F{i}" for i in range(20)], 500)
	frozen = start_worker(table, sequence, kafka.bootstrap, topic, 500, 3)
	survivor = None
	try:
		assert wait_for(lambda: status_counts(table).get(PUBLISHED, 0) >= 1000, 60)
		assert freeze_holding_a_claim(frozen, table), "the relay never held a claim; the test proved nothing"
		survivor = start_worker(table, sequence, kafka.bootstrap, topic)
		assert wait_for(lambda: status_counts(table) == {PUBLISHED: len(ids)}, 60), status_counts(table)
	finally:
		frozen.kill()
		frozen.wait(10)
		if survivor is not None:
			survivor.terminate()
			survivor.wait(20)
	messages = read_topic(kafka.bootstrap, topic, len(ids), timeout=60, until=all_ids_seen(ids))
	for key, sequence_seen in per_key_sequences(messages).items():
		# What the frozen relay had produced may appear twice; order by first appearance holds.
		assert list(dict.fromkeys(sequence_seen)) == list(range(500)), key


@pytest.mark.slow
def test_several_relays_share_the_outbox_without_duplicates(kafka, outbox_table):
	table, sequence = outbox_table
	topic = f"relay.many.{uuid.uuid4().hex[:6]}"
	ids = fill(table, sequence, [f"K{i}" for i in range(30)], 200)
	workers = [start_worker(table, sequence, kafka.bootstrap, topic, batch=200) for _ in range(3)]
	assert wait_for(lambda: status_counts(table) == {PUBLISHED: len(ids)}, 120)
	for worker in workers:
		worker.terminate()
	for worker in workers:
		assert worker.wait(20) == 0, worker.stderr.read()
	messages = read_topic(kafka.bootstrap, topic, len(ids), timeout=60)
	assert len(messages) == len(ids)
	assert {json.loads(m.value())["id"] for m in messages} == set(ids)
	assert all(seq == list(range(200)) for seq in per_key_sequences(messages).values())
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT COUNT(DISTINCT topic), MIN(attempts), MAX(attempts) FROM `{table}`")
		assert cur.fetchone() == (1, 1, 1)
	conn.close()
