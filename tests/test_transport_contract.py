"""One contract for every Transport adapter: memory, a real Kafka-protocol broker, real RabbitMQ."""

import uuid

import pika
import pytest
from tcp_proxy import CREATE_TOPICS, PRODUCE, RequestSwallower

from cauldron_fabric.core.errors import BrokerUnreachable, ConfigurationError, UnknownTransport
from cauldron_fabric.core.ports import OutboundMessage
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.testing.kafka_broker import KafkaBroker, free_port, read_topic

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture(params=["memory", "kafka", "amqp"])
def transport_and_reader(request):
	if request.param == "memory":
		transport = open_transport(f"memory://{uuid.uuid4().hex}")

		def read(topic, expected):
			return [(m.key, m.body) for m in transport.topics[topic]]

	elif request.param == "amqp":
		# Topics become routing keys on a fresh exchange; one queue bound with '#' reads them back.
		exchange = f"contract.{uuid.uuid4().hex[:8]}"
		transport = open_transport(RABBITMQ_URL, {"exchange": exchange})
		queue = transport.declare_queue(f"{exchange}.all", ("#",), dead_letter=False).queue
		connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
		request.addfinalizer(lambda: _delete_amqp(connection, exchange, queue))

		def read(topic, expected):
			channel, received = connection.channel(), []
			while len(received) < expected:
				method, properties, body = channel.basic_get(queue, auto_ack=True)
				if method is None:
					break
				if method.routing_key == topic:
					received.append((properties.headers["cloudEvents_partitionkey"], body))
			return received

	else:
		broker = request.getfixturevalue("kafka")
		transport = open_transport(broker.url, {"topic_partitions": 3})

		def read(topic, expected):
			return [(m.key().decode(), m.value()) for m in read_topic(broker.bootstrap, topic, expected)]

	yield transport, read
	transport.close()


def _delete_amqp(connection, exchange, queue):
	channel = connection.channel()
	channel.queue_delete(queue)
	channel.exchange_delete(exchange)
	connection.close()


def messages(topic, keys, per_key):
	return [
		OutboundMessage(topic, key, f"{key}:{n}".encode(), (("ce_id", f"{key}-{n}"),))
		for n in range(per_key)
		for key in keys
	]


def test_every_message_is_acknowledged_with_its_position(transport_and_reader):
	transport, _ = transport_and_reader
	topic = f"contract.{uuid.uuid4().hex[:8]}"
	deliveries = transport.publish(messages(topic, ["a", "b"], 5), timeout=20)
	assert len(deliveries) == 10 and all(d.ok for d in deliveries)
	assert all(
		d.destination == topic and d.offset is not None and d.partition is not None for d in deliveries
	)


def test_messages_of_one_key_keep_their_order(transport_and_reader):
	transport, read = transport_and_reader
	topic = f"contract.{uuid.uuid4().hex[:8]}"
	keys = ["k1", "k2", "Sales Invoice/SINV-ü3"]  # a str key travels as its UTF-8 bytes
	sent = messages(topic, keys, 20)
	assert all(d.ok for d in transport.publish(sent, timeout=20))
	received = read(topic, len(sent))
	assert len(received) == len(sent)
	for key in keys:
		bodies = [body.decode() for k, body in received if k == key]
		assert bodies == [f"{key}:{n}" for n in range(20)]


def test_kafka_batch_larger_than_the_producer_queue_goes_out_in_order(kafka):
	"""A full producer queue (BufferError) makes the transport wait for room, never drop or reorder."""
	transport = open_transport(kafka.url, {"extra": {"queue.buffering.max.messages": 50}})
	topic = f"contract.{uuid.uuid4().hex[:8]}"
	sent = messages(topic, ["a", "b", "c"], 200)
	deliveries = transport.publish(sent, timeout=30)
	transport.close()
	assert all(d.ok for d in deliveries)
	offsets: dict[int, list[int]] = {}
	for delivery in deliveries:
		offsets.setdefault(delivery.partition, []).append(delivery.offset)
	assert all(found == sorted(found) for found in offsets.values())
	received = read_topic(kafka.bootstrap, topic, len(sent))
	for key in ("a", "b", "c"):
		bodies = [m.value().decode() for m in received if m.key() == key.encode()]
		assert bodies == [f"{key}:{n}" for n in range(200)]


def test_check_reports_a_live_broker(transport_and_reader):
	transport, _ = transport_and_reader
	report = transport.check(timeout=5)
	assert report.ok, report.summary


def test_kafka_check_explains_an_unreachable_broker():
	transport = open_transport(f"kafka://127.0.0.1:{free_port()}")
	report = transport.check(timeout=2)
	assert not report.ok
	assert "No Kafka broker answered" in report.summary and "bootstrap servers" in report.summary


def test_kafka_outage_gives_retryable_failures_not_exceptions():
	transport = open_transport(
		f"kafka://127.0.0.1:{free_port()}", {"message_timeout_ms": 1500, "auto_create_topics": False}
	)
	deliveries = transport.publish(messages("nowhere", ["a"], 3), timeout=5)
	assert [d.ok for d in deliveries] == [False] * 3
	assert all(d.retryable for d in deliveries)
	assert "did not take the message" in str(deliveries[0].error)
	# Every message to it fails alike: a bulk Retry stops trying this broker (BrokerUnreachable).
	assert all(isinstance(d.error, BrokerUnreachable) for d in deliveries)


def test_a_message_the_answering_cluster_takes_too_long_for_is_no_unreachable_cluster():
	# A cluster that answers but takes no message in time (a partition without a leader, too
	# few in-sync replicas) may still take other topics' messages: only a cluster the client
	# lost is unreachable, for which a bulk Retry stops trying the broker.
	port = free_port()
	with KafkaBroker(advertised_port=port) as broker:
		proxy = RequestSwallower(port, broker.port, PRODUCE).start()
		transport = open_transport(f"kafka://127.0.0.1:{port}", {"message_timeout_ms": 1500})
		try:
			deliveries = transport.publish(messages("stuck", ["a"], 2), timeout=5)
		finally:
			transport.close()
			proxy.stop()
	assert [d.ok for d in deliveries] == [False, False]
	assert all(d.retryable for d in deliveries)
	assert not any(isinstance(d.error, BrokerUnreachable) for d in deliveries), deliveries[0].error


def test_a_topic_creation_that_fails_is_a_retryable_failure_that_says_so():
	# The creation's future.result() raised TimeoutError out of publish() and stopped the relay;
	# a refused creation was only logged, so events told to "allow topic auto-creation", on.
	port = free_port()
	with KafkaBroker(advertised_port=port) as broker:
		proxy = RequestSwallower(port, broker.port, CREATE_TOPICS).start()
		no_broker_creation = {"allow.auto.create.topics": False, "topic.metadata.propagation.max.ms": 500}
		transport = open_transport(
			f"kafka://127.0.0.1:{port}", {"message_timeout_ms": 3000, "extra": no_broker_creation}
		)
		try:
			deliveries = transport.publish(messages("never-created", ["a"], 2), timeout=5)
		finally:
			transport.close()
			proxy.stop()
	assert [d.ok or not d.retryable for d in deliveries] == [False, False]
	error = str(deliveries[0].error)
	assert "could not create it" in error and "allow topic auto-creation" not in error
	assert not isinstance(deliveries[0].error, BrokerUnreachable), "one topic refused, not the broker"


def test_unknown_scheme_and_bad_settings_are_explained():
	with pytest.raises(UnknownTransport, match="kafka://"):
		open_transport("nats://localhost")
	with pytest.raises(ConfigurationError, match="SASL username and password"):
		open_transport("kafka://h:9092", {"security_protocol": "SASL_SSL"})
	with pytest.raises(ConfigurationError, match="security protocol"):
		open_transport("kafka://h:9092", {"security_protocol": "TLS"})
	with pytest.raises(ConfigurationError, match="bootstrap servers"):
		open_transport("kafka://")
