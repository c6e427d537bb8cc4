"""The delivery worker publishing to real brokers: a Kafka-protocol broker and RabbitMQ."""

import json
import uuid

import pika
import pytest
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.formats.json import JSONFormat
from delivery_fabric import FAST, Fabric

from cauldron_fabric.core.delivery.records import DEFERRED
from cauldron_fabric.core.delivery.subscription import build_subscription
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.testing.kafka_broker import read_topic
from conftest import make_envelope

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def rabbit_exchange():
	"""Yields a fresh exchange name and a reading channel; deletes the exchange and its queues after."""
	exchange = f"delivery.{uuid.uuid4().hex[:6]}"
	connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
	yield exchange, connection.channel()
	channel = connection.channel()
	for name in (f"{exchange}.invoices", f"{exchange}.invoices.dead"):
		channel.queue_delete(name)
	for name in (exchange, f"{exchange}.dlx"):
		channel.exchange_delete(name)
	connection.close()


def test_kafka_and_rabbitmq_destinations_through_real_brokers(kafka, rabbit_exchange):
	exchange, channel = rabbit_exchange
	topic = f"delivery.{uuid.uuid4().hex[:6]}"
	rabbit = open_transport(RABBITMQ_URL, {"exchange": exchange})
	queue = rabbit.declare_queue(f"{exchange}.invoices", ("sales_invoice.#",)).queue
	transports = {"kafka": open_transport(kafka.url, {"topic_partitions": 3}), "amqp": rabbit}
	fabric = Fabric(
		[
			build_subscription("to-kafka", f"kafka:{topic}", event_types=["sales_invoice.*"], **FAST),
			build_subscription("to-rabbit", f"amqp:{exchange}/sales_invoice.submitted", event_types=["*.submitted"],
				payload_form="cloudevents-binary", **FAST),
			build_subscription("unroutable", f"amqp:{exchange}/nobody.listens", event_types=["*.submitted"], **FAST),
		],
		transports,
	)  # fmt: skip
	events = [make_envelope("Sales Invoice", f"SINV-{n}", "submitted", n=n) for n in range(5)]
	fabric.emit(*events)
	report = fabric.worker().deliver_due()
	fabric.close()
	for transport in transports.values():
		transport.close()
	assert (report.delivered, report.dead) == (10, 5)
	messages = read_topic(kafka.bootstrap, topic, 5)
	assert sorted(json.loads(m.value())["id"] for m in messages) == sorted(e.id for e in events)
	assert dict(messages[0].headers())["ce_specversion"] == b"1.0"
	received = []
	while (message := channel.basic_get(queue, auto_ack=True))[0] is not None:
		_, properties, body = message
		amqp_message = ce_amqp.AMQPMessage(
			{"content-type": properties.content_type}, properties.headers, body
		)
		received.append(ce_amqp.from_binary(amqp_message, JSONFormat()))
	assert [e.get_id() for e in received] == [e.id for e in events]
	assert received[0].get_data()["entityId"] == "SINV-0" and properties.delivery_mode == 2
	unroutable = [row for row in fabric.rows() if row.subscription == "unroutable"]
	assert all("No queue is bound" in row.last_error for row in unroutable)


def test_a_missing_broker_connection_waits_instead_of_failing():
	fabric = Fabric([build_subscription("r", "amqp:ex/key", event_types=["*"], **FAST)])
	fabric.emit(make_envelope())
	report = fabric.worker().deliver_due()
	assert report.retrying == 1 and "No RabbitMQ connection is configured" in fabric.rows()[0].last_error
	assert DEFERRED not in fabric.worker().store.status_counts()
	fabric.close()
