"""A reply the broker did not take is sent again: the request is left undone and comes back.

The responder commits the request's effect and keeps its replies on the processed mark; when
sending them fails (the broker stopped answering, the reply queue does not exist yet), the
request is not acknowledged, and its redelivery, a duplicate, sends the kept replies. A reply
address that never takes them is given up after a few attempts. Real brokers and a real MariaDB
tracking table; the effects table has no unique key, so a second run of a handler would show.
"""

import os
import signal
import threading
import time
import uuid
from contextlib import contextmanager

import pika
from confluent_kafka import Producer
from consumer_buses import RABBITMQ_URL, KafkaBus, RabbitBus, bus_fixture, tables_fixture  # noqa: F401

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, open_requester, open_source
from cauldron_fabric.core.consumer.messages import CORRELATION_ID, REPLY_DEADLINE, REPLY_PARTITION, REPLY_TO
from cauldron_fabric.core.consumer.tracking_sql import SqlTrackingStore
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.testing.events import document_event
from cauldron_fabric.testing.kafka_broker import create_topic, read_topic
from conftest import connect_db

PRICE = "quote.price.requested"


def price_request() -> Envelope:
	return document_event(
		"Quote",
		"Q-1",
		"requested",
		{"qty": 2},
		type=PRICE,
		source="urn:test:requester",
		user=None,
		tenant=None,
	)


def responder(bus, channel, tables, on_handled=lambda: None, broker_options=None, **option_fields):
	"""Returns a consumer whose handler records an effect and replies ``{"price": 5.0}``.

	Its requesters reply on ``<channel>.replies`` (Kafka) or on queues ``replies.*`` (RabbitMQ).
	"""
	(table, sequence), effects = tables
	group = f"replies-{uuid.uuid4().hex[:6]}"
	if isinstance(bus, RabbitBus):
		bus.remember(group)
	options = ConsumerOptions(
		group=group,
		poll_timeout=0.1,
		commit_interval=0.2,
		outage_backoff=Backoff(0.3, 2, 1, 0),
		**option_fields,
	)
	if bus.name == "kafka":
		# The reply fails within 2 s when the broker does not answer (its default is 10 s).
		extra = {
			"session_timeout_ms": 10000,
			"message_timeout_ms": 2000,
			"reply_topic": f"{channel}.replies",
			**(broker_options or {}),
		}
		source = open_source(bus.url, options, [channel], broker_options=extra)
	else:
		extra = {"exchange": channel, "allowed_reply_addresses": ["replies.*"], **(broker_options or {})}
		source = open_source(bus.url, options, ["#"], broker_options=extra)

	def handle(envelope, context):
		with context.transaction.cursor() as cur:
			cur.execute(
				f"INSERT INTO `{effects}` (event_id, worker, part) VALUES (%s, 'r', 0)", (envelope.id,)
			)
		on_handled()
		context.reply({"price": 5.0})

	tracking = SqlTrackingStore(connect_db, table=table, sequence=sequence)
	return Consumer(source, HandlerTable.from_mapping({PRICE: handle}), tracking, options)


def effects_of(tables, event_id) -> int:
	conn = connect_db()
	try:
		with conn.cursor() as cur:
			cur.execute(f"SELECT COUNT(*) FROM `{tables[1]}` WHERE event_id = %s", (event_id,))
			return cur.fetchone()[0]
	finally:
		conn.close()


def consume_until(consumer, condition, timeout):
	deadline = time.monotonic() + timeout
	while not condition() and time.monotonic() < deadline:
		consumer.consume_round()
	return condition()


def test_kafka_a_reply_lost_while_the_broker_stopped_answering_is_sent_once_it_answers(kafka, tables):
	"""The broker freezes (SIGSTOP) while the responder replies, and comes back 5 s later."""
	bus = KafkaBus(kafka)
	channel = bus.channel()
	frozen = []

	def freeze_the_broker():
		if not frozen:
			frozen.append(kafka.process.pid)
			os.kill(kafka.process.pid, signal.SIGSTOP)
			threading.Timer(5, os.kill, (kafka.process.pid, signal.SIGCONT)).start()

	consumer = responder(bus, channel, tables, freeze_the_broker)
	requester = open_requester(
		bus.url, source="urn:test:requester", broker_options={"reply_topic": f"{channel}.replies"}
	)
	answers, stop = [], threading.Event()
	running = threading.Thread(target=consumer.run, args=(stop.is_set,), daemon=True)
	try:
		running.start()
		answers.append(requester.request(PRICE, {"qty": 2}, 40, target=channel))
	finally:
		stop.set()
		running.join(20)
		consumer.close()
		requester.close()
		if frozen:
			os.kill(frozen[0], signal.SIGCONT)
	(answer,) = answers
	assert answer.payload == {"price": 5.0}
	counts = consumer.stats.totals()
	assert (counts.processed, counts.duplicates, counts.unreplied) == (1, 1, 0)
	assert counts.deferred >= 1, "the request waited for the broker instead of being marked done"
	assert effects_of(tables, answer.request.id) == 1, "the request changed nothing twice"


def publish_amqp_request(exchange: str, request: Envelope, reply_to: str, extra_headers=None) -> None:
	connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
	try:
		channel = connection.channel()
		channel.confirm_delivery()
		headers = {f"cloudEvents_{k[3:]}": v for k, v in kafka_headers(request) if k.startswith("ce_")}
		headers.update(extra_headers or {})
		properties = pika.BasicProperties(
			headers=headers,
			content_type="application/json",
			reply_to=reply_to,
			correlation_id=request.id,
		)
		channel.basic_publish(exchange, PRICE, request.to_json().encode(), properties, mandatory=True)
	finally:
		connection.close()


def named_reply_queue(bus) -> str:
	"""A classic RPC reply queue's name, dropped with the bus (declared by the test when it wants)."""
	queue = f"replies.{uuid.uuid4().hex[:8]}"
	bus.queues.add(queue)
	return queue


def the_reply(bus, queue: str):
	"""Takes the reply from a reply queue: its properties and its envelope."""
	method, properties, body = bus.connection.channel().basic_get(queue, auto_ack=True)
	assert method is not None, "the reply never reached the queue"
	return properties, Envelope.from_json(body)


@contextmanager
def classic_rpc(tables):
	"""A responder on RabbitMQ, a price request and a requester's named reply queue (declared by
	the test when it wants); the queues go with the bus."""
	bus = RabbitBus()
	try:
		channel, request = bus.channel(), price_request()
		yield bus, channel, request, responder(bus, channel, tables), named_reply_queue(bus)
	finally:
		bus.close()


def test_rabbitmq_a_reply_to_a_queue_declared_late_is_sent_once_it_exists(tables):
	"""A requester with its own named reply queue (classic RPC) that declares it only later."""
	with classic_rpc(tables) as (bus, channel, request, consumer, reply_queue):
		publish_amqp_request(channel, request, reply_queue)
		try:
			assert consume_until(consumer, lambda: consumer.stats.totals().deferred >= 1, 20), (
				"the request was acknowledged although its reply went nowhere"
			)
			bus.connection.channel().queue_declare(reply_queue)
			assert consume_until(consumer, lambda: consumer.stats.totals().duplicates >= 1, 20)
		finally:
			consumer.close()
		properties, reply = the_reply(bus, reply_queue)
		assert properties.correlation_id == request.id
		assert reply.data.payload == {"price": 5.0}
		assert bus.lag(consumer.options.group, channel) == 0, "acknowledged once the reply went"
		assert effects_of(tables, request.id) == 1


def test_rabbitmq_a_correlation_id_too_long_for_amqp_goes_back_in_its_header(tables):
	"""AMQP's correlation_id property holds 255 bytes; a requester's header may hold more."""
	with classic_rpc(tables) as (bus, channel, request, consumer, reply_queue):
		bus.connection.channel().queue_declare(reply_queue)
		long_id = "c" * 300
		publish_amqp_request(channel, request, reply_queue, {CORRELATION_ID: long_id})
		try:
			assert consume_until(consumer, lambda: consumer.stats.totals().processed >= 1, 20)
		finally:
			consumer.close()
		properties, reply = the_reply(bus, reply_queue)
		assert properties.correlation_id is None and properties.headers[CORRELATION_ID] == long_id
		assert reply.data.payload == {"price": 5.0}
		assert consumer.stats.totals().unreplied == 0


def test_a_reply_address_that_never_takes_the_reply_is_given_up_after_the_attempts(bus, tables):
	"""Kafka: a reply partition the reply topic does not have; RabbitMQ: a queue never declared."""
	channel, request = bus.channel(), price_request()
	consumer = responder(bus, channel, tables, reply_attempts=3)
	if bus.name == "kafka":
		reply_topic = f"{channel}.replies"
		create_topic(bus.broker.bootstrap, reply_topic, 1)
		headers = [
			*kafka_headers(request),
			(REPLY_TO, reply_topic),
			(REPLY_PARTITION, "7"),
			(CORRELATION_ID, request.id),
		]
		producer = Producer({"bootstrap.servers": bus.broker.bootstrap})
		producer.produce(channel, value=request.to_json().encode(), key=b"Q-1", headers=headers)
		producer.flush(10)
	else:
		publish_amqp_request(channel, request, f"replies.{uuid.uuid4().hex[:8]}")
	try:
		assert consume_until(consumer, lambda: consumer.stats.totals().unreplied >= 1, 40)
		consumer.run(max_seconds=2)  # commits the offset
	finally:
		consumer.close()
	counts = consumer.stats.totals()
	assert (counts.processed, counts.duplicates, counts.unreplied) == (1, 1, 1), counts
	assert counts.deferred == 2, "two more attempts, then given up"
	assert bus.lag(consumer.options.group, channel) == 0, "marked done once given up"
	assert effects_of(tables, request.id) == 1


def test_a_request_whose_reply_headers_are_not_whole_numbers_is_answered(bus, tables):
	# Another requester's headers: a deadline in fractional milliseconds (``time.time() * 1000``)
	# and, on Kafka, a reply partition that is no number. Both raised ValueError out of the
	# consumer after the effect was committed; restarted, it met the duplicate's kept replies
	# and stopped again, for ever.
	channel, request = bus.channel(), price_request()
	consumer = responder(bus, channel, tables)
	deadline = str((time.time() + 60) * 1000)
	if bus.name == "kafka":
		reply_topic = f"{channel}.replies"
		create_topic(bus.broker.bootstrap, reply_topic, 1)
		headers = [
			*kafka_headers(request),
			(REPLY_TO, reply_topic),
			(REPLY_PARTITION, "any"),
			(CORRELATION_ID, request.id),
			(REPLY_DEADLINE, deadline),
		]
		producer = Producer({"bootstrap.servers": bus.broker.bootstrap})
		producer.produce(channel, value=request.to_json().encode(), key=b"Q-1", headers=headers)
		producer.flush(10)
	else:
		reply_topic = f"replies.{uuid.uuid4().hex[:8]}"
		bus.queues.add(reply_topic)
		bus.connection.channel().queue_declare(reply_topic)
		publish_amqp_request(channel, request, reply_topic, {REPLY_DEADLINE: deadline})
	try:
		assert consume_until(consumer, lambda: consumer.stats.totals().processed >= 1, 20)
		consumer.run(max_seconds=1)  # commits the offset
	finally:
		consumer.close()
	assert bus.lag(consumer.options.group, channel) == 0, "the request is done"
	assert consumer.stats.totals().unreplied == 0
	if bus.name == "kafka":
		(reply,) = read_topic(bus.broker.bootstrap, reply_topic, 1, timeout=10)
		body = reply.value()
	else:
		_method, _properties, body = bus.connection.channel().basic_get(reply_topic, auto_ack=True)
	assert Envelope.from_json(body).data.payload == {"price": 5.0}


def test_kafka_a_reply_partition_past_what_kafka_can_name_is_given_up_not_a_crash(kafka, tables):
	# The partition is handed to the producer as a C int: one past its range raised
	# OverflowError out of the consumer, after the request's effect was committed, and again
	# after every restart, as the duplicate sends its kept replies.
	bus = KafkaBus(kafka)
	channel, request = bus.channel(), price_request()
	consumer = responder(bus, channel, tables, reply_attempts=2)
	reply_topic = f"{channel}.replies"
	create_topic(kafka.bootstrap, reply_topic, 1)
	headers = [
		*kafka_headers(request),
		(REPLY_TO, reply_topic),
		(REPLY_PARTITION, str(2**31)),
		(CORRELATION_ID, request.id),
	]
	producer = Producer({"bootstrap.servers": kafka.bootstrap})
	producer.produce(channel, value=request.to_json().encode(), key=b"Q-1", headers=headers)
	producer.flush(10)
	try:
		assert consume_until(consumer, lambda: consumer.stats.totals().unreplied >= 1, 30)
		consumer.run(max_seconds=1)  # commits the offset
	finally:
		consumer.close()
	assert bus.lag(consumer.options.group, channel) == 0, "marked done once given up"
	assert effects_of(tables, request.id) == 1
