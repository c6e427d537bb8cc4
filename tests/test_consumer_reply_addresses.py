"""A responder writes replies only where it may: never where a request's sender points it.

A request names its own reply address. Unchecked, anyone able to publish a request could make a
trusted responder write fabric-signed envelopes into any topic or queue (an event topic other
services consume: spoofed events). Real brokers and a real MariaDB tracking table.
"""

import threading
import uuid

import pytest
from confluent_kafka import Producer
from consumer_buses import KafkaBus, RabbitBus, bus_fixture, tables_fixture  # noqa: F401
from test_consumer_replies import (
	PRICE,
	consume_until,
	effects_of,
	price_request,
	publish_amqp_request,
	responder,
)

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.consumer import ConsumerOptions, InboundMessage, open_requester, open_source
from cauldron_fabric.core.consumer.messages import (
	CORRELATION_ID,
	DEAD_LETTER_REASON,
	EXCEPTION_MESSAGE,
	REPLY_ADDRESS_REFUSED,
	REPLY_TO,
)
from cauldron_fabric.core.consumer.reply_addresses import ReplyAddressRefused
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.testing.kafka_broker import create_topic, read_topic, written_before_sentinel
from conftest import connect_db

SENTINEL = b"sentinel"


def publish_kafka_request(bus: KafkaBus, channel: str, request: Envelope, reply_to: str) -> None:
	headers = [*kafka_headers(request), (REPLY_TO, reply_to), (CORRELATION_ID, request.id)]
	producer = Producer({"bootstrap.servers": bus.broker.bootstrap})
	producer.produce(channel, value=request.to_json().encode(), key=b"Q-1", headers=headers)
	producer.flush(10)


def reply_address(bus, name: str) -> str:
	"""Creates a one-partition topic (Kafka) or a queue (RabbitMQ) named ``name``; returns it."""
	if bus.name == "kafka":
		create_topic(bus.broker.bootstrap, name, 1)
	else:
		bus.queues.add(name)
		bus.connection.channel().queue_declare(name)
	return name


def send_request(bus, channel: str, request: Envelope, reply_to: str) -> None:
	if bus.name == "kafka":
		publish_kafka_request(bus, channel, request, reply_to)
	else:
		publish_amqp_request(channel, request, reply_to)


def written_to(bus, address: str) -> list[bytes]:
	"""Returns every body in a topic or queue, read up to a sentinel written now (so the read worked)."""
	if bus.name == "kafka":
		return written_before_sentinel(bus.broker.bootstrap, address)
	channel = bus.connection.channel()
	channel.basic_publish("", address, SENTINEL)
	bodies = []
	while (got := channel.basic_get(address, auto_ack=True))[0] is not None:
		bodies.append(got[2])
	assert SENTINEL in bodies, f"the sentinel never came back from {address}"
	return [body for body in bodies if body != SENTINEL]


def processed_marks(tables, event_id) -> int:
	conn = connect_db()
	try:
		with conn.cursor() as cur:
			cur.execute(f"SELECT COUNT(*) FROM `{tables[0][0]}` WHERE event_id = %s", (event_id,))
			return cur.fetchone()[0]
	finally:
		conn.close()


def test_a_request_naming_an_address_not_allowed_is_dead_lettered_and_its_handler_never_runs(bus, tables):
	# The address an attacker picks: an event topic (a queue) other services consume.
	channel, request = bus.channel(), price_request()
	victim = reply_address(bus, f"victim.{uuid.uuid4().hex[:8]}")
	consumer = responder(bus, channel, tables)
	send_request(bus, channel, request, victim)
	try:
		assert consume_until(consumer, lambda: consumer.stats.totals().dead_lettered >= 1, 30)
		consumer.run(max_seconds=1)  # commits the offset
	finally:
		consumer.close()
	counts = consumer.stats.totals()
	assert (counts.processed, counts.dead_lettered, counts.unreplied) == (0, 1, 0), counts
	assert effects_of(tables, request.id) == 0, "the handler never ran"
	assert processed_marks(tables, request.id) == 0, "nothing was recorded as processed"
	assert written_to(bus, victim) == [], "nothing reached the address the request named"
	((headers, body),) = bus.dead_letters(consumer.options.group, 1)
	assert headers[DEAD_LETTER_REASON] == REPLY_ADDRESS_REFUSED
	assert repr(victim) in headers[EXCEPTION_MESSAGE]
	assert "Fabric Settings → Other reply addresses" in headers[EXCEPTION_MESSAGE]
	assert Envelope.from_json(body).id == request.id
	assert bus.lag(consumer.options.group, channel) == 0, "the refused request is done"


def test_replies_reach_the_requesters_reply_address_and_those_the_allow_list_names(bus, tables):
	channel = bus.channel()
	listed = reply_address(bus, f"audit.{uuid.uuid4().hex[:8]}.replies")
	consumer = responder(bus, channel, tables, broker_options={"allowed_reply_addresses": "x.y\naudit.*"})
	options = {"exchange": channel} if bus.name == "amqp" else {"reply_topic": f"{channel}.replies"}
	requester = open_requester(bus.url, source="urn:test:requester", broker_options=options)
	stop, answers = threading.Event(), []
	running = threading.Thread(target=consumer.run, args=(stop.is_set,), daemon=True)
	listed_request = price_request()
	try:
		running.start()
		# Kafka: the requesters' reply topic; RabbitMQ: direct reply-to.
		answers.append(
			requester.request(PRICE, {"qty": 2}, 30, target=channel if bus.name == "kafka" else None)
		)
		send_request(bus, channel, listed_request, listed)
		if bus.name == "kafka":
			(reply,) = read_topic(bus.broker.bootstrap, listed, 1, 20)
			body = reply.value()
		else:
			body = None
			for _ in range(200):
				method, _properties, body = bus.connection.channel().basic_get(listed, auto_ack=True)
				if method is not None:
					break
				stop.wait(0.1)
	finally:
		stop.set()
		running.join(20)
		consumer.close()
		requester.close()
	assert answers[0].payload == {"price": 5.0}
	assert body is not None and Envelope.from_json(body).metadata.causation_id == listed_request.id
	assert consumer.stats.totals().dead_lettered == 0


def request_to(address: str) -> InboundMessage:
	return InboundMessage("requests", 0, 0, None, b"", ((REPLY_TO, address),))


def test_kafka_replies_go_to_cauldron_replies_unless_the_reply_topic_option_names_another(kafka):
	bus = KafkaBus(kafka)
	channel = bus.channel()
	source = open_source(bus.url, ConsumerOptions(group=f"g-{uuid.uuid4().hex[:6]}"), [channel])
	try:
		source.check_reply_address(request_to("cauldron.replies"))
		source.check_reply_address(InboundMessage(channel, 0, 0, None, b""))  # no reply wanted
		for refused in ("cauldron.sales_invoice", "cauldron.replies.x", f"{channel}.replies"):
			with pytest.raises(ReplyAddressRefused, match=f"{refused!r}.*allowed: 'cauldron.replies'"):
				source.check_reply_address(request_to(refused))
	finally:
		source.close()
	source = bus.source(ConsumerOptions(group=f"g-{uuid.uuid4().hex[:6]}"), channel)  # reply_topic set
	try:
		source.check_reply_address(request_to(f"{channel}.replies"))
		with pytest.raises(ReplyAddressRefused):
			source.check_reply_address(request_to("cauldron.replies"))
	finally:
		source.close()


def test_rabbitmq_replies_go_to_direct_reply_to_and_only_to_listed_queues():
	bus = RabbitBus()
	group = f"g-{uuid.uuid4().hex[:6]}"
	source = bus.source(ConsumerOptions(group=group), bus.channel(), allowed_reply_addresses=["rpc.*"])
	try:
		source.check_reply_address(request_to("amq.rabbitmq.reply-to.g1h2AA5yZXBseUAx"))
		source.check_reply_address(request_to("rpc.pricing"))
		for refused in (group, f"{group}.dead", "amq.rabbitmq.reply-tox", "xrpc.pricing"):
			with pytest.raises(ReplyAddressRefused, match=f"RabbitMQ queue {refused!r}"):
				source.check_reply_address(request_to(refused))
	finally:
		source.close()
		bus.close()


def test_a_reply_to_an_address_not_allowed_is_not_written_even_when_sent_directly(kafka):
	# The consumer checks before the handlers run; the source refuses again when asked to send.
	bus = KafkaBus(kafka)
	channel = bus.channel()
	source = bus.source(ConsumerOptions(group=f"g-{uuid.uuid4().hex[:6]}"), channel)
	victim = reply_address(bus, f"victim.{uuid.uuid4().hex[:8]}")
	request = price_request()
	message = InboundMessage(channel, 0, 0, None, b"", ((REPLY_TO, victim), (CORRELATION_ID, request.id)))
	try:
		with pytest.raises(ReplyAddressRefused):
			source.reply(message, request)
	finally:
		source.close()
	assert written_to(bus, victim) == []
