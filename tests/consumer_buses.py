"""The two real buses the consumer behaviour suite runs against: Kafka (Tansu) and RabbitMQ.

Each bus gives a fresh channel per test (a Kafka topic, or a RabbitMQ exchange whose group
queues bind ``#``), publishes messages, opens sources, reads dead letters and measures lag.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pika
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.consumer import open_source
from cauldron_fabric.core.consumer.kafka_group import dead_letter_topic, group_lag
from cauldron_fabric.core.consumer.rabbitmq_queues import dead_letter_queue, expired_queue, retry_queue
from cauldron_fabric.core.consumer.tracking_sql import create_table_sql
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.testing.kafka_broker import read_topic
from conftest import connect_db

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
WORKER = Path(__file__).with_name("consumer_worker.py")
PARTITIONS = 4


def wire(envelope: Envelope) -> tuple[str, bytes, tuple, str]:
	"""Returns an event in the fabric's default wire form: key, body, headers, routing key."""
	return envelope.partition_key, envelope.to_json().encode(), kafka_headers(envelope), envelope.type


def raw(
	body: bytes, routing_key: str = "garbage.created", key: str = "garbage"
) -> tuple[str, bytes, tuple, str]:
	"""Returns a message that is not a fabric event."""
	return key, body, (), routing_key


class KafkaBus:
	name = "kafka"

	def __init__(self, broker):
		self.broker, self.url = broker, broker.url

	def channel(self) -> str:
		topic = f"consume.{uuid.uuid4().hex[:8]}"
		admin = AdminClient({"bootstrap.servers": self.broker.bootstrap})
		for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
			future.result(10)
		return topic

	def source(self, options, channel, **extra):
		"""Opens a member of ``options.group`` on ``channel``, whose requesters reply on ``<channel>.replies``."""
		broker_options = {
			"session_timeout_ms": 6000,
			"topic_partitions": PARTITIONS,
			"reply_topic": f"{channel}.replies",
			**extra,
		}
		return open_source(self.url, options, [channel], broker_options=broker_options)

	def publish(self, channel, messages, max_bytes: int | None = None) -> list[tuple[int, int]]:
		"""Produces each message on its own (exact watermarks on Tansu); returns (partition, offset)s."""
		config = {"bootstrap.servers": self.broker.bootstrap}
		if max_bytes:
			config["message.max.bytes"] = max_bytes
		producer = Producer(config)
		placed = []
		for key, body, headers, _routing_key in messages:
			producer.produce(
				channel,
				value=body,
				key=key.encode(),
				headers=list(headers),
				on_delivery=lambda err, msg: placed.append((msg.partition(), msg.offset())),
			)
			producer.flush(10)
		return placed

	def dead_letters(self, group, expected, timeout=20):
		messages = read_topic(self.broker.bootstrap, dead_letter_topic(group), expected, timeout)
		return [({k: v.decode() for k, v in m.headers() or ()}, m.value()) for m in messages]

	def lag(self, group, channel) -> int:
		return sum(entry.lag for entry in group_lag(self.broker.bootstrap, group, [channel]))

	def close(self):
		pass


class RabbitBus:
	name = "amqp"
	url = RABBITMQ_URL

	def __init__(self):
		self.connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
		self.exchanges, self.queues = [], set()

	def channel(self) -> str:
		exchange = f"consume.{uuid.uuid4().hex[:8]}"
		self.connection.channel().exchange_declare(exchange, "topic", durable=True)
		self.exchanges += [exchange, f"{exchange}.dlx"]
		return exchange

	def source(self, options, channel, **extra):
		source = open_source(
			self.url, options, ["#"], broker_options={"exchange": channel, "prefetch": 10, **extra}
		)
		self.remember(options.group, source.retry_delays)
		return source

	def remember(self, group, delays=(0.2, 0.4, 0.8, 1.0)):
		self.queues |= {
			group,
			dead_letter_queue(group),
			expired_queue(group),
			*(retry_queue(group, d) for d in delays),
		}

	def publish(self, channel, messages) -> list[tuple[int, int]]:
		chan = self.connection.channel()
		chan.confirm_delivery()
		for key, body, headers, routing_key in messages:
			amqp_headers = {f"cloudEvents_{k[3:]}": v for k, v in headers if k.startswith("ce_")}
			amqp_headers["cloudEvents_partitionkey"] = key
			properties = pika.BasicProperties(
				headers=amqp_headers, content_type="application/json", delivery_mode=2
			)
			chan.basic_publish(channel, routing_key, body, properties, mandatory=True)
		chan.close()
		return [(0, None)] * len(messages)

	def dead_letters(self, group, expected, timeout=20):
		chan, found = self.connection.channel(), []
		deadline = time.monotonic() + timeout
		while len(found) < expected and time.monotonic() < deadline:
			method, properties, body = chan.basic_get(dead_letter_queue(group), auto_ack=True)
			if method is None:
				time.sleep(0.1)
				continue
			found.append(({k: str(v) for k, v in (properties.headers or {}).items()}, body))
		chan.close()
		return found

	def lag(self, group, channel) -> int:
		return self.connection.channel().queue_declare(group, passive=True).method.message_count

	def close(self):
		chan = self.connection.channel()
		for queue in self.queues:
			chan.queue_delete(queue)
		for exchange in self.exchanges:
			chan.exchange_delete(exchange)
		self.connection.close()


@pytest.fixture(params=["kafka", "amqp"], name="bus")
def bus_fixture(request):
	"""Yields each real bus in turn."""
	if request.param == "kafka":
		instance = KafkaBus(request.getfixturevalue("kafka"))
	else:
		instance = RabbitBus()
	yield instance
	instance.close()


@pytest.fixture(name="tables")
def tables_fixture(database):
	"""Creates a tracking table (with its sequence) and an effects table; drops them after."""
	suffix = uuid.uuid4().hex[:8]
	tracking = (f"tabProcessed Event {suffix}", f"processed_event_{suffix}_seq")
	effects = f"consumer_effects_{suffix}"
	conn = connect_db()
	with conn.cursor() as cur:
		for statement in create_table_sql(*tracking):
			cur.execute(statement)
		cur.execute(f"CREATE TABLE `{effects}` (event_id varchar(140), worker varchar(40), part int)")
	conn.commit()
	yield tracking, effects
	with conn.cursor() as cur:
		cur.execute(f"DROP TABLE IF EXISTS `{tracking[0]}`, `{effects}`")
		cur.execute(f"DROP SEQUENCE IF EXISTS `{tracking[1]}`")
	conn.commit()
	conn.close()


class Worker:
	"""A consumer_worker.py process and the lines it printed."""

	def __init__(self, bus, group, channel, tracking, effects, name, hold_after=0, env=None):
		if isinstance(bus, RabbitBus):
			bus.remember(group)
		args = [bus.url, group, channel, *tracking, effects, name, str(hold_after)]
		self.process = subprocess.Popen(
			[sys.executable, str(WORKER), *args],
			stdout=subprocess.PIPE,
			stderr=subprocess.DEVNULL,
			text=True,
			env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), **(env or {})},
		)
		self.lines: list[str] = []
		threading.Thread(target=self._read, daemon=True).start()

	def _read(self):
		for line in self.process.stdout:
			self.lines.append(line.strip())

	def wait_for(self, prefix, timeout=40.0) -> str:
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			found = [line for line in self.lines if line.startswith(prefix)]
			if found:
				return found[0]
			if self.process.poll() is not None and not any(line.startswith(prefix) for line in self.lines):
				time.sleep(0.2)
				if not any(line.startswith(prefix) for line in self.lines):
					break
			time.sleep(0.05)
		raise AssertionError(f"worker never printed {prefix!r}; it printed {self.lines}")

	def kill(self):
		if self.process.poll() is None:
			self.process.kill()
		self.process.wait(10)


def wait_for(condition, timeout, interval=0.1):
	"""Polls ``condition`` until it holds or ``timeout`` passes; returns its last value."""
	deadline = time.monotonic() + timeout
	while True:
		value = condition()
		if value or time.monotonic() >= deadline:
			return value
		time.sleep(interval)
