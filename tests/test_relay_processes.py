"""Relays as separate processes: one killed with SIGKILL mid-batch, one frozen holding a
claim, and several sharing one outbox without duplicates.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from relay_support import fill, per_key_sequences, status_counts, wait_for

from cauldron_fabric.core.outbox.statements import PENDING, PUBLISHED
from cauldron_fabric.testing.kafka_broker import read_topic
from conftest import connect_db

WORKER = Path(__file__).with_name("relay_worker.py")


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
