"""What the relay test modules share: filling an outbox table, counting its rows by status,
draining a relay, building a pipelined one and reading back each document's order.
"""

import json
import time
from collections import defaultdict

from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.ports import OutboxAppend
from cauldron_fabric.core.relay import Relay
from conftest import connect_db, make_envelope


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


def published_count(reports):
	return sum(r.published for r in reports)


def first_occurrences(sequence):
	"""Returns the sequence without repeats, each value where it first appeared."""
	return list(dict.fromkeys(sequence))


def wait_for(condition, timeout, interval=0.05):
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		if condition():
			return True
		time.sleep(interval)
	return False
