"""Request-reply on RabbitMQ alone: a requester's connection idle, shared or cut off, replies
whose time is an AMQP timestamp, and requests that expire unanswered.
"""

import datetime as dt
import logging
import threading
import time
import uuid

import pika
import pytest
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from consumer_buses import RabbitBus
from request_responders import PRICE, Responders
from tcp_proxy import Proxy

from cauldron_fabric.core.consumer import (
	Consumer,
	ConsumerOptions,
	HandlerTable,
	MemoryTracking,
	RequestTimeout,
	open_requester,
)
from cauldron_fabric.core.errors import FabricError, TransportUnavailable
from cauldron_fabric.testing.kafka_broker import free_port


def test_a_rabbitmq_requester_idle_past_the_heartbeat_timeout_reconnects_instead_of_failing():
	# Between requests nothing answers heartbeats: the broker drops the idle connection, and the
	# next request used to fail on it (a 503 and a circuit failure) instead of reconnecting.
	bus = RabbitBus()
	channel, group = bus.channel(), f"pricing-{uuid.uuid4().hex[:6]}"
	responders = Responders(bus, channel, group, ["east"])
	requester = open_requester(
		f"{bus.url}?heartbeat=1", source="urn:test:requester", broker_options={"exchange": channel}
	)
	try:
		assert requester.request(PRICE, {"sku": "S-1", "qty": 1}, 10).payload["price"] == 2.5
		time.sleep(4)  # the broker closes a connection silent for two heartbeats
		assert requester.request(PRICE, {"sku": "S-1", "qty": 2}, 10).payload["price"] == 5.0
	finally:
		requester.close()
		responders.close()
		bus.close()


def test_concurrent_rabbitmq_requests_each_get_their_own_reply_within_their_own_timeout():
	# The requester is shared by a process's threads. It used to serve one call at a time, the
	# wait for the channel not counted in the timeout: a call stuck behind a silent target
	# answered long after its own timeout (or timed out, opening a healthy target's circuit).
	bus = RabbitBus()
	channel, group = bus.channel(), f"pricing-{uuid.uuid4().hex[:6]}"
	responders = Responders(bus, channel, group, ["east", "west"])
	requester = open_requester(bus.url, source="urn:test:requester", broker_options={"exchange": channel})
	outcomes = {}

	def ask(name, payload, timeout):
		started = time.monotonic()
		try:
			outcomes[name] = (requester.request(PRICE, payload, timeout).payload, time.monotonic() - started)
		except Exception as exc:
			outcomes[name] = (exc, time.monotonic() - started)

	try:
		requester.request(PRICE, {"sku": "S-1", "qty": 1}, 10)  # connected, responders up
		silent = threading.Thread(target=ask, args=("silent", {"sku": "S-0", "qty": 1, "silent": True}, 3))
		silent.start()
		time.sleep(0.3)
		askers = [threading.Thread(target=ask, args=(n, {"sku": f"S-{n}", "qty": n}, 2)) for n in range(1, 9)]
		for thread in askers:
			thread.start()
		for thread in [silent, *askers]:
			thread.join(15)
		assert isinstance(outcomes["silent"][0], RequestTimeout) and 2.9 < outcomes["silent"][1] < 4
		for n in range(1, 9):
			payload, took = outcomes[n]
			assert isinstance(payload, dict), payload
			assert payload["price"] == n * 2.5, "each call gets the reply to its own request"
			assert took < 1.5, f"call {n} took {took:.1f} s behind the silent one"
	finally:
		requester.close()
		responders.close()
		bus.close()


def test_a_rabbitmq_reply_whose_time_is_an_amqp_timestamp_answers_the_request():
	# A responder of another module replying with the official SDK's AMQP binding writes 'time'
	# as milliseconds since the epoch. The requester read it as text, found no ISO-8601 time and
	# dropped the reply: the call timed out although the answer had come.
	bus = RabbitBus()
	channel, queue = bus.channel(), f"sdk-pricing-{uuid.uuid4().hex[:6]}"
	bus.queues.add(queue)
	admin = pika.BlockingConnection(pika.URLParameters(bus.url)).channel()
	admin.queue_declare(queue, auto_delete=True)
	admin.queue_bind(queue, channel, PRICE)

	def respond(chan, method, properties, body):
		reply = CloudEvent(
			attributes={
				"type": "quote.price.replied",
				"source": "urn:cauldron:pricing",
				"id": uuid.uuid4().hex,
				"time": dt.datetime.now(dt.timezone.utc),
				"datacontenttype": "application/json",
			},
			data={"entity": "Quote", "entityId": "Q-1", "action": "replied", "payload": {"price": 7.5}},
		)
		message = ce_amqp.to_binary(reply, JSONFormat())
		answer = pika.BasicProperties(
			headers=message.application_properties,
			content_type="application/json",
			correlation_id=properties.correlation_id,
		)
		chan.basic_publish("", properties.reply_to, message.application_data, answer)

	admin.basic_consume(queue, respond, auto_ack=True)
	requester = open_requester(bus.url, source="urn:test:requester", broker_options={"exchange": channel})
	outcome = {}

	def ask():
		try:
			outcome["reply"] = requester.request(PRICE, {"sku": "S-1", "qty": 3}, 3).payload
		except Exception as exc:
			outcome["reply"] = exc

	try:
		asker = threading.Thread(target=ask)
		asker.start()
		deadline = time.monotonic() + 5
		while asker.is_alive() and time.monotonic() < deadline:
			admin.connection.process_data_events(time_limit=0.05)
		asker.join(1)
		assert outcome["reply"] == {"price": 7.5}
	finally:
		requester.close()
		admin.connection.close()
		bus.close()


def queue_depth(bus, queue):
	"""Returns the ready messages of a queue (0 when it does not exist)."""
	try:
		return bus.connection.channel().queue_declare(queue, passive=True).method.message_count
	except pika.exceptions.ChannelClosedByBroker:
		return 0


def test_rabbitmq_requests_that_expire_unanswered_are_drained_counted_and_never_served_late(caplog):
	# A request nobody takes within its timeout expires in the group's queue and the broker
	# dead-letters it. It used to land in <group>.dead with no fabric header and no record:
	# nothing ever read it, the queue grew with every timeout and nobody could tell why.
	bus = RabbitBus()
	channel, group = bus.channel(), f"pricing-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(group=group, poll_timeout=0.05)
	admin = bus.connection.channel()
	admin.exchange_declare(f"{channel}.dlx", "direct", durable=True)
	admin.queue_declare(f"{group}.dead", durable=True)
	admin.queue_bind(f"{group}.dead", f"{channel}.dlx", routing_key=group)  # as earlier versions did
	bus.source(options, channel).close()  # the group's queues exist, but no responder runs
	requester = open_requester(bus.url, source="urn:test:requester", broker_options={"exchange": channel})
	served = []
	try:
		for qty in (1, 2, 3):
			with pytest.raises(RequestTimeout):
				requester.request(PRICE, {"sku": "S-1", "qty": qty}, 0.2)
		deadline = time.monotonic() + 10
		while queue_depth(bus, group) and time.monotonic() < deadline:
			time.sleep(0.1)  # the broker expires them one by one
		consumer = Consumer(
			bus.source(options, channel),
			HandlerTable.from_mapping({PRICE: lambda envelope, context: served.append(envelope)}),
			MemoryTracking().session(),
			options,
		)
		with caplog.at_level(logging.WARNING, "cauldron_fabric.consumer"):
			consumer.run(lambda: getattr(consumer.stats.totals(), "expired", 0) == 3, max_seconds=5)
		consumer.close()
		assert queue_depth(bus, f"{group}.dead") == 0, "the dead letters keep only what failed"
		assert queue_depth(bus, f"{group}.expired") == 0, "expired requests are drained"
		assert served == [], "an expired request is never served late"
		assert consumer.stats.totals().expired == 3
		expired = [r.getMessage() for r in caplog.records if "expired" in r.getMessage()]
		assert len(expired) == 3 and all(PRICE in line for line in expired), expired
	finally:
		requester.close()
		bus.close()


def test_a_rabbitmq_request_to_a_broker_that_stopped_answering_ends_at_its_timeout():
	# The requester waited for the broker's confirm of each request, with no bound: a broker
	# that stopped answering held a call with a 2 s timeout until the heartbeat gave up, over
	# two minutes, and every other call of the process behind it.
	bus = RabbitBus()
	port = free_port()
	proxy = Proxy(port, 5672).start()
	requester = open_requester(
		f"amqp://guest:guest@127.0.0.1:{port}/%2F",
		source="urn:test:requester",
		broker_options={"exchange": bus.channel()},
	)
	try:
		with pytest.raises(TransportUnavailable, match="No responder queue is bound"):
			requester.request(PRICE, {"sku": "S-1", "qty": 1}, 5)  # connected; nobody answers PRICE
		proxy.frozen = True
		started = time.monotonic()
		with pytest.raises(FabricError):
			requester.request(PRICE, {"sku": "S-1", "qty": 1}, 2)
		assert time.monotonic() - started < 4, "the call ended at its timeout"
	finally:
		proxy.frozen = False
		requester.close()
		proxy.stop()
		bus.close()
