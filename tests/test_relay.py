"""The relay against a real Kafka-protocol broker and a real MariaDB outbox: ordering.

Every document's events in order through one relay and through pipelined sessions, an odd
payload that must not stop the rest, a batch whose conclusion fails, and an idle relay.
"""

import json
import uuid

import pytest
from relay_support import (
	drain,
	fill,
	first_occurrences,
	per_key_sequences,
	pipelined_relay,
	published_count,
	status_counts,
)

from cauldron_fabric.core.errors import TransportUnavailable
from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.outbox.statements import PUBLISHED
from cauldron_fabric.core.ports import OutboxAppend
from cauldron_fabric.core.relay import Relay, RelayOptions
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.core.transports.kafka import KafkaTransport
from cauldron_fabric.testing.kafka_broker import read_topic
from conftest import connect_db, make_envelope


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
