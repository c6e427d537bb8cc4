"""The RabbitMQ transport against the machine's real broker: outages, dead letters, refusals, bindings."""

import time
import uuid

import pika
import pytest
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.bindings import rabbitmq as ce_rabbitmq
from cloudevents.core.formats.json import JSONFormat
from tcp_proxy import Proxy

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.errors import BrokerUnreachable, ConfigurationError, MessageRejected
from cauldron_fabric.core.ports import OutboundMessage
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.core.transports.amqp import (
	AmqpAddress,
	BrokerNack,
	MessageUnroutable,
	connection_parameters,
	parse_destination,
)
from cauldron_fabric.testing.kafka_broker import free_port
from conftest import make_envelope

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def broker():
	"""Yields a unique exchange name and a channel for reading; deletes what the test declared."""
	exchange = f"test.{uuid.uuid4().hex[:8]}"
	connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
	declared = {"queues": [], "exchanges": [exchange, f"{exchange}.dlx"]}
	yield exchange, connection.channel(), declared
	channel = connection.channel()
	for queue in declared["queues"]:
		channel.queue_delete(queue)
	for name in declared["exchanges"]:
		channel.exchange_delete(name)
	connection.close()


def message(destination, n=0, headers=()):
	return OutboundMessage(destination, f"ToDo/T-{n}", f'{{"n":{n}}}'.encode(), tuple(headers))


def test_destinations_name_an_exchange_and_a_routing_key():
	assert parse_destination("orders/sales_invoice.submitted") == AmqpAddress(
		"orders", "sales_invoice.submitted"
	)
	assert parse_destination("sales_invoice.submitted", "events") == AmqpAddress(
		"events", "sales_invoice.submitted"
	)
	assert parse_destination("/work-queue") == AmqpAddress("", "work-queue")


def test_an_unreachable_broker_gives_retryable_failures_and_an_explained_check():
	transport = open_transport(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", {"connection_timeout": 2})
	deliveries = transport.publish([message("a.b", n) for n in range(3)], timeout=3)
	assert [d.ok for d in deliveries] == [False] * 3 and all(d.retryable for d in deliveries)
	assert "No RabbitMQ broker answered" in str(deliveries[0].error)
	assert all(isinstance(d.error, BrokerUnreachable) for d in deliveries)
	report = transport.check(timeout=2)
	assert not report.ok and "Check the host, the port" in report.summary


def test_wrong_credentials_wait_for_a_fix_instead_of_failing_events():
	transport = open_transport("amqp://guest:wrong@127.0.0.1:5672/%2F")
	(delivery,) = transport.publish([message("a.b")], timeout=5)
	assert delivery.retryable and "refused user 'guest'" in str(delivery.error)
	assert isinstance(delivery.error, BrokerUnreachable)
	assert "vhost" in open_transport("amqp://guest:guest@127.0.0.1:5672/no-such-vhost").check(5).summary


def test_a_broker_outage_mid_life_is_retryable_and_publishing_resumes(broker):
	exchange, _, _ = broker
	port = free_port()
	proxy = Proxy(port, 5672).start()
	transport = open_transport(
		f"amqp://guest:guest@127.0.0.1:{port}/%2F", {"exchange": exchange, "mandatory": False}
	)
	assert all(d.ok for d in transport.publish([message("a.b", n) for n in range(5)], timeout=5))
	proxy.stop()
	failed = transport.publish([message("a.b", n) for n in range(5)], timeout=3)
	assert not any(d.ok for d in failed) and all(d.retryable for d in failed)
	proxy = Proxy(port, 5672).start()
	assert all(d.ok for d in transport.publish([message("a.b", n) for n in range(5)], timeout=5))
	transport.close()
	proxy.stop()


def test_a_rejected_message_lands_in_the_dead_letter_queue(broker):
	exchange, channel, declared = broker
	transport = open_transport(RABBITMQ_URL, {"exchange": exchange})
	topology = transport.declare_queue(f"{exchange}.invoices", ("sales_invoice.*",))
	declared["queues"] += [topology.queue, topology.dead_letter_queue]
	assert topology.dead_letter_exchange == f"{exchange}.dlx"
	sent = transport.publish(
		[message("sales_invoice.submitted", 1), message("sales_invoice.cancelled", 2)], 5
	)
	assert all(d.ok for d in sent)
	first, _, _ = channel.basic_get(topology.queue)
	channel.basic_reject(first.delivery_tag, requeue=False)
	second, _, _ = channel.basic_get(topology.queue)
	channel.basic_nack(second.delivery_tag, requeue=False)
	time.sleep(0.2)
	dead = []
	while (got := channel.basic_get(topology.dead_letter_queue, auto_ack=True))[0] is not None:
		dead.append(got)
	assert [body for _, _, body in dead] == [b'{"n":1}', b'{"n":2}']
	death = dead[0][1].headers["x-death"][0]
	assert death["reason"] == "rejected" and death["queue"] == topology.queue
	assert death["routing-keys"] == ["sales_invoice.submitted"]
	assert channel.queue_declare(topology.queue, passive=True).method.message_count == 0
	transport.close()


def test_an_unroutable_message_is_refused_unless_mandatory_is_off(broker):
	exchange, _, _ = broker
	strict = open_transport(RABBITMQ_URL, {"exchange": exchange})
	(delivery,) = strict.publish([message("nobody.listens")], 5)
	assert isinstance(delivery.error, MessageUnroutable) and not delivery.retryable
	assert "Bind a queue" in str(delivery.error)
	relaxed = open_transport(RABBITMQ_URL, {"exchange": exchange, "mandatory": False})
	assert relaxed.publish([message("nobody.listens")], 5)[0].ok
	strict.close()
	relaxed.close()


def test_a_full_queue_nacks_and_the_nack_is_retryable(broker):
	exchange, channel, declared = broker
	transport = open_transport(RABBITMQ_URL, {"exchange": exchange})
	arguments = {"x-max-length": 1, "x-overflow": "reject-publish"}
	topology = transport.declare_queue(f"{exchange}.tiny", dead_letter=False, arguments=arguments)
	declared["queues"].append(topology.queue)
	deliveries = transport.publish([message("a.b", n) for n in range(3)], 5)
	assert [d.ok for d in deliveries] == [True, False, False]
	assert isinstance(deliveries[1].error, BrokerNack) and deliveries[1].retryable
	assert "negative confirm" in str(deliveries[1].error)
	channel.queue_purge(topology.queue)
	assert transport.publish([message("a.b", 9)], 5)[0].ok
	transport.close()


def test_a_refused_exchange_fails_only_its_own_messages(broker):
	exchange, channel, declared = broker
	channel.exchange_declare(f"{exchange}.direct", "direct", durable=False, auto_delete=False)
	declared["exchanges"].append(f"{exchange}.direct")
	transport = open_transport(RABBITMQ_URL, {"exchange": exchange, "mandatory": False})
	deliveries = transport.publish(
		[message(f"{exchange}.direct/x"), message("a.b"), message(f"{exchange}.direct/y"), message("c.d")], 5
	)
	assert [d.ok for d in deliveries] == [False, True, False, True]
	assert isinstance(deliveries[0].error, MessageRejected) and "PRECONDITION_FAILED" in str(
		deliveries[0].error
	)
	missing = open_transport(RABBITMQ_URL, {"exchange": f"{exchange}.absent", "declare_exchanges": False})
	assert "MISSING" in missing.check(5).summary
	assert not missing.publish([message("a.b")], 5)[0].retryable
	transport.close()
	missing.close()


@pytest.mark.parametrize("binding", ["amqp", "rabbitmq"])
def test_messages_follow_the_cloudevents_binding_and_are_persistent(broker, binding):
	exchange, channel, declared = broker
	transport = open_transport(RABBITMQ_URL, {"exchange": exchange, "cloudevents_binding": binding})
	topology = transport.declare_queue(f"{exchange}.all", dead_letter=False)
	declared["queues"].append(topology.queue)
	envelope = make_envelope("Sales Invoice", "SINV-3", "submitted", grand_total=10)
	outbound = OutboundMessage(
		"sales_invoice.submitted",
		envelope.partition_key,
		envelope.to_json().encode(),
		kafka_headers(envelope),
	)
	assert transport.publish([outbound], 5)[0].ok
	_, properties, body = channel.basic_get(topology.queue, auto_ack=True)
	assert properties.delivery_mode == 2 and properties.content_type == "application/json"
	assert properties.message_id == envelope.id and properties.type == envelope.type
	if binding == "amqp":
		event = ce_amqp.from_binary(
			ce_amqp.AMQPMessage({"content-type": properties.content_type}, properties.headers, body),
			JSONFormat(),
		)
		assert properties.headers["cloudEvents_partitionkey"] == "Sales Invoice/SINV-3"
	else:
		event = ce_rabbitmq.from_binary(
			ce_rabbitmq.RabbitMQMessage(properties.headers, properties.content_type, body), JSONFormat()
		)
	assert event.get_id() == envelope.id and event.get_data() == envelope.to_dict()
	assert event.get_extension("tenantid") == "test.localhost"
	transport.close()


def test_check_reports_server_version_and_vhost(broker):
	exchange, _, _ = broker
	report = open_transport(RABBITMQ_URL, {"exchange": exchange}).check(5)
	details = dict(report.details)
	assert report.ok and details["server"].startswith("RabbitMQ 3.") and details["vhost"] == "/"
	assert "declared on first publish" in report.summary
	with pytest.raises(ConfigurationError, match="CloudEvents binding"):
		open_transport(RABBITMQ_URL, {"cloudevents_binding": "mqtt"})


def test_a_message_over_the_brokers_size_limit_fails_for_good_and_alone(broker):
	# RabbitMQ's default max_message_size is 128 MiB: a larger body used to close the channel and
	# come back as a retryable outage, failing every later message of each batch it was in.
	exchange, channel, declared = broker
	transport = open_transport(RABBITMQ_URL, {"exchange": exchange})
	topology = transport.declare_queue(f"{exchange}.all", dead_letter=False)
	declared["queues"].append(topology.queue)
	huge = OutboundMessage("a.b", "ToDo/T-2", b"x" * (128 * 1024 * 1024 + 1), ())
	batch = [message("a.b", 0), message("a.b", 1), huge, message("a.b", 3), message("a.b", 4)]
	deliveries = transport.publish(batch, 20)
	assert [d.ok for d in deliveries] == [True, True, False, True, True]
	assert isinstance(deliveries[2].error, MessageRejected) and not deliveries[2].retryable
	assert "max message size" in str(deliveries[2].error)
	assert channel.queue_declare(topology.queue, passive=True).method.message_count == 4
	transport.close()


def test_a_broker_closing_the_channel_for_a_too_large_message_fails_only_that_one_for_good(broker):
	# With a limit above the broker's, the broker itself refuses the message and closes the
	# channel: the too large message is refused for good, the others are published or retried.
	exchange, _, declared = broker
	transport = open_transport(RABBITMQ_URL, {"exchange": exchange, "max_message_size": 2**30})
	topology = transport.declare_queue(f"{exchange}.all", dead_letter=False)
	declared["queues"].append(topology.queue)
	huge = OutboundMessage("a.b", "ToDo/T-2", b"x" * (128 * 1024 * 1024 + 1), ())
	deliveries = transport.publish([message("a.b", 0), huge, message("a.b", 3)], 20)
	assert isinstance(deliveries[1].error, MessageRejected) and not deliveries[1].retryable
	assert "max message size" in str(deliveries[1].error)
	assert all(d.ok or d.retryable for d in (deliveries[0], deliveries[2]))
	assert transport.publish([message("a.b", 5)], 5)[0].ok
	transport.close()


def test_a_message_amqp_cannot_carry_fails_for_good_and_the_channel_stays_in_step(broker):
	# A routing key over 255 bytes used to escape publish() as pika's ShortStringTooLong, after
	# its sequence number was taken: the next batches' confirms then settled the wrong messages.
	exchange, channel, declared = broker
	transport = open_transport(RABBITMQ_URL, {"exchange": exchange})
	topology = transport.declare_queue(f"{exchange}.ab", ("a.b",), dead_letter=False)
	declared["queues"].append(topology.queue)
	deliveries = transport.publish([message("a.b", 0), message("x" * 300, 1), message("a.b", 2)], 5)
	assert [d.ok for d in deliveries] == [True, False, True]
	assert isinstance(deliveries[1].error, MessageRejected) and not deliveries[1].retryable
	started = time.monotonic()
	deliveries = transport.publish([message("nobody.listens", 3), message("a.b", 4)], 5)
	assert [d.ok for d in deliveries] == [False, True]
	assert isinstance(deliveries[0].error, MessageUnroutable)
	assert time.monotonic() - started < 2, "every confirm came back"
	assert channel.queue_declare(topology.queue, passive=True).method.message_count == 3
	transport.close()


def test_a_malformed_url_is_reported_without_its_password():
	with pytest.raises(ConfigurationError, match="heartbeat") as refused:
		connection_parameters("amqp://guest:S3cret%21pw@127.0.0.1:5672/%2F?heartbeat=often", {})
	assert "S3cret" not in str(refused.value)
	assert "amqp://guest:***@127.0.0.1:5672/%2F?heartbeat=often" in str(refused.value)


def test_an_unroutable_message_is_told_apart_from_a_routed_one_at_the_same_address(broker):
	# On a headers exchange the routing key does not decide: of two messages to one address
	# one may be routed and the next returned, and the return must fail the returned one.
	exchange, channel, declared = broker
	transport = open_transport(RABBITMQ_URL, {"exchange": exchange, "exchange_type": "headers"})
	queue = f"{exchange}.routed"
	arguments = {"x-match": "all", "cloudEvents_type": "todo.routed"}
	transport.declare_queue(queue, binding_keys=(), dead_letter=False)
	channel.queue_bind(queue, exchange, arguments=arguments)
	declared["queues"].append(queue)

	def typed(n, event_type):
		return message("any.key", n, [("ce_id", f"id-{n}"), ("ce_type", event_type)])

	batch = [typed(n, "todo.routed" if n % 3 else "todo.unrouted") for n in range(12)]
	deliveries = transport.publish(batch, 5)
	assert [d.ok for d in deliveries] == [bool(n % 3) for n in range(12)]
	assert all(isinstance(d.error, MessageUnroutable) for d in deliveries if not d.ok)
	assert channel.queue_declare(queue, passive=True).method.message_count == 8
	transport.close()
