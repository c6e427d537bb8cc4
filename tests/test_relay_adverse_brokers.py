"""The relay and its transports under adverse conditions, against the real brokers and MariaDB.

Rows written around the Envelope class (raw SQL), header values a broker cannot carry, names
a protocol cannot encode: each fails alone, for good and saying why, and never stops the relay
or the other documents' events.
"""

import datetime as dt
import json
import uuid

import pika
import pytest
from relay_support import drain, fill, status_counts

from cauldron_fabric.core.errors import BrokerUnreachable, ConfigurationError, MessageRejected
from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.outbox.statements import FAILED, PENDING, PUBLISHED
from cauldron_fabric.core.ports import OutboundMessage
from cauldron_fabric.core.relay import Relay, RelayOptions
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.testing.kafka_broker import read_topic
from conftest import connect_db, make_envelope

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def insert_raw(table, sequence, key, envelope_json):
	"""Writes a Pending row the way raw SQL or a broken migration could; returns its id."""
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(
			f"""INSERT INTO `{table}` (name, partition_key, envelope, status, attempts)
			VALUES (nextval(`{sequence}`), %s, %s, 'Pending', 0)""",
			(key, envelope_json),
		)
		cur.execute(f"SELECT MAX(name) FROM `{table}`")
		(seq,) = cur.fetchone()
	conn.commit()
	conn.close()
	return int(seq)


def rows(table):
	"""Returns every row's status, attempts and error by id."""
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT name, status, attempts, last_error FROM `{table}` ORDER BY name")
		found = {int(name): (status, attempts, error) for name, status, attempts, error in cur.fetchall()}
	conn.close()
	return found


def kafka_relay(kafka, outbox_table, topic, **options):
	table, sequence = outbox_table
	store = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	return Relay(store, open_transport(kafka.url), RelayOptions(topic_template=topic, **options))


def drain_with_a_kafka_relay(kafka, outbox_table, topic) -> None:
	"""Relays until no row is Pending (30 s at most), then closes the relay."""
	relay = kafka_relay(kafka, outbox_table, topic)
	try:
		assert drain(relay, limit_seconds=30) == 0
	finally:
		relay.close()


def test_rows_whose_envelope_cannot_be_read_fail_alone_and_say_why(kafka, outbox_table):
	# _message() raised out of the claim (JSONDecodeError, TypeError, KeyError): the relay
	# stopped with a traceback on every start, and every event behind the row waited.
	table, sequence = outbox_table
	topic = f"relay.corrupt.{uuid.uuid4().hex[:6]}"
	ids = fill(table, sequence, ["A", "B"], 2)
	no_data = json.dumps({"id": "x", "type": "todo.updated", "source": "s", "time": "t"})
	corrupt = [
		insert_raw(table, sequence, "ToDo/A", '{"id": "broken'),
		insert_raw(table, sequence, "ToDo/C", "null"),
		insert_raw(table, sequence, "ToDo/D", no_data),
		insert_raw(table, sequence, "ToDo/E", '{"id": "\\ud800"}'),  # a lone surrogate
	]
	ids += fill(table, sequence, ["A", "B"], 2)
	drain_with_a_kafka_relay(kafka, outbox_table, topic)
	found = rows(table)
	for seq in corrupt:
		status, _, error = found[seq]
		assert status == FAILED and f"envelope of event #{seq}" in error and "retry" in error, error
	assert status_counts(table) == {PUBLISHED: len(ids), FAILED: len(corrupt)}
	sent = read_topic(kafka.bootstrap, topic, len(ids))
	assert sorted(json.loads(m.value())["id"] for m in sent) == sorted(ids)


def test_a_row_without_a_partition_key_goes_out_and_order_still_holds_for_the_others(kafka, outbox_table):
	# The claim sorted the batch's keys with None among them and raised TypeError whenever an
	# earlier row waited (a retry due later): the relay stopped on every claim.
	table, sequence = outbox_table
	topic = f"relay.keyless.{uuid.uuid4().hex[:6]}"
	fill(table, sequence, ["A"], 1)  # waits for a retry an hour from now
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(
			f"UPDATE `{table}` SET next_attempt_at = %s", (dt.datetime.now() + dt.timedelta(hours=1),)
		)
	conn.commit()
	conn.close()
	keyless = make_envelope("ToDo", "X", "updated", n=0)
	insert_raw(table, sequence, None, keyless.to_json())
	later = fill(table, sequence, ["A", "B"], 1)
	relay = kafka_relay(kafka, outbox_table, topic)
	try:
		report = relay.relay_pending_events()
	finally:
		relay.close()
	assert (report.claimed, report.published) == (2, 2)  # A's later event waits behind its first
	sent = read_topic(kafka.bootstrap, topic, 2)
	assert sorted(json.loads(m.value())["id"] for m in sent) == sorted([keyless.id, later[1]])
	assert status_counts(table) == {PUBLISHED: 2, PENDING: 2}


def test_header_values_kafka_cannot_carry_fail_that_event_alone_and_publish_the_rest_once(
	kafka, outbox_table
):
	# produce() raised TypeError out of publish_async with the batch's earlier messages already
	# queued: the relay stopped, and those messages went out a second time on the next start.
	table, sequence = outbox_table
	topic = f"relay.headers.{uuid.uuid4().hex[:6]}"
	ids = fill(table, sequence, ["A", "B"], 2)
	odd = make_envelope("ToDo", "N", "updated", n=0).to_dict()
	odd["metadata"]["correlationId"] = 42  # valid JSON, but a Kafka header value must be text
	bad = insert_raw(table, sequence, "ToDo/N", json.dumps(odd))
	ids += fill(table, sequence, ["A", "B"], 2)
	drain_with_a_kafka_relay(kafka, outbox_table, topic)
	status, _, error = rows(table)[bad]
	assert status == FAILED and "cannot be carried by Kafka" in error and "header" in error, error
	assert status_counts(table) == {PUBLISHED: len(ids), FAILED: 1}
	sent = read_topic(kafka.bootstrap, topic, len(ids) + 1, timeout=6)  # one more: any repeat
	assert sorted(json.loads(m.value())["id"] for m in sent) == sorted(ids)  # each exactly once


def test_a_header_value_that_is_no_utf8_fails_for_good_without_raising(kafka):
	transport = open_transport(kafka.url)
	topic = f"adverse.surrogate.{uuid.uuid4().hex[:6]}"
	try:
		deliveries = transport.publish(
			[
				OutboundMessage(topic, "k", b"1"),
				OutboundMessage(topic, "k", b"2", (("ce_id", "\ud800"),)),
				OutboundMessage(topic, "k", b"3"),
			],
			10,
		)
	finally:
		transport.close()
	assert [d.ok for d in deliveries] == [True, False, True]
	assert isinstance(deliveries[1].error, MessageRejected) and not deliveries[1].retryable


def test_a_kafka_authentication_failure_is_named_in_the_error_and_the_check(kafka):
	# The metadata request's error said only "Broker transport failure": the client's own error
	# (SASL refused) was never served, so neither the Event Log nor the check told the cause.
	sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u", "sasl_password": "wrong"}
	transport = open_transport(kafka.url, sasl)
	try:
		with pytest.raises(BrokerUnreachable) as failed:
			transport.ensure_topics({"adverse.sasl"}, timeout=2)
		report = transport.check(2)
	finally:
		transport.close()
	assert "SASL" in str(failed.value) and "credentials" in str(failed.value), failed.value
	assert not report.ok and "SASL" in report.summary, report.summary


@pytest.fixture
def exchange():
	"""Yields a unique exchange name; deletes it after."""
	name = f"adverse.{uuid.uuid4().hex[:8]}"
	yield name
	connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
	connection.channel().exchange_delete(name)
	connection.close()


def test_an_exchange_setting_amqp_cannot_carry_is_a_configuration_error():
	# pika raised ShortStringTooLong out of every publish() and check() for a name over 255
	# bytes: the relay stopped with a traceback instead of showing the setting as unusable.
	with pytest.raises(ConfigurationError, match="at most 255"):
		open_transport(RABBITMQ_URL, {"exchange": "e" * 300})


def test_a_destination_exchange_amqp_cannot_carry_fails_alone_with_a_reason(exchange):
	# The same ShortStringTooLong came out of publish() for a destination naming such an exchange.
	transport = open_transport(RABBITMQ_URL, {"exchange": exchange, "mandatory": False})
	try:
		deliveries = transport.publish(
			[
				OutboundMessage(f"{exchange}/a.b", "k", b"1"),
				OutboundMessage("x" * 300 + "/a.b", "k", b"2"),
				OutboundMessage(f"{exchange}/a.b", "k", b"3"),
			],
			5,
		)
	finally:
		transport.close()
	assert [d.ok for d in deliveries] == [True, False, True]
	assert isinstance(deliveries[1].error, MessageRejected) and "300 bytes long" in str(deliveries[1].error)
