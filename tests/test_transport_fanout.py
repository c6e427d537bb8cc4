"""Publishing to several brokers at once, and routing RabbitMQ by event type."""

import pika
import pytest

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.ports import OutboundMessage
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.core.transports.fanout import FanoutTransport, RoutedTransport, route_by_event_type
from cauldron_fabric.core.transports.memory import MemoryTransport
from conftest import make_envelope

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def message(action: str = "submitted") -> OutboundMessage:
	envelope = make_envelope("Sales Invoice", "SINV-1", action)
	return OutboundMessage(
		"cauldron.sales_invoice", envelope.partition_key, envelope.to_json().encode(), kafka_headers(envelope)
	)


def test_every_leg_gets_every_message_and_the_first_legs_position_is_reported():
	kafka, rabbit = MemoryTransport("fanout-a"), MemoryTransport("fanout-b")
	fanout = FanoutTransport([kafka, RoutedTransport(rabbit, route_by_event_type("events"))])
	(delivery,) = fanout.publish([message()], 5)
	assert delivery.ok and delivery.destination == "cauldron.sales_invoice" and delivery.offset == 0
	assert list(kafka.topics) == ["cauldron.sales_invoice"]
	assert list(rabbit.topics) == ["events/sales_invoice.submitted"]


def test_one_leg_down_fails_the_message_as_retryable_so_nothing_is_lost():
	up, down = MemoryTransport("fanout-up"), MemoryTransport("fanout-down")
	down.outage = True
	(delivery,) = FanoutTransport([up, down]).publish([message()], 5)
	assert not delivery.ok and delivery.retryable and "down" in str(delivery.error)
	down.outage = False
	down.reject.add("cauldron.sales_invoice")
	(delivery,) = FanoutTransport([down, up]).publish([message()], 5)
	assert not delivery.ok and not delivery.retryable


@pytest.mark.slow
def test_routed_rabbitmq_leg_lands_under_the_event_type_on_a_real_broker():
	exchange = "fanout.test.routing"
	connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
	channel = connection.channel()
	channel.exchange_declare(exchange, "topic", durable=True)
	queue = channel.queue_declare("", exclusive=True).method.queue
	channel.queue_bind(queue, exchange, routing_key="sales_invoice.*")
	transport = RoutedTransport(
		open_transport(RABBITMQ_URL, {"exchange": exchange, "mandatory": False}),
		route_by_event_type(exchange),
	)
	try:
		deliveries = transport.publish([message("submitted"), message("cancelled")], 10)
		assert [d.ok for d in deliveries] == [True, True]
		keys = []
		while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
			keys.append(got[0].routing_key)
		assert keys == ["sales_invoice.submitted", "sales_invoice.cancelled"]
	finally:
		transport.close()
		channel.exchange_delete(exchange)
		connection.close()
