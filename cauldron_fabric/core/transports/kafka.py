"""Kafka through confluent-kafka (librdkafka): idempotent producer, acks from all replicas.

``kafka://host1:9092,host2:9092`` with options:

=====================  ==============================================================
option                 meaning
=====================  ==============================================================
security_protocol      PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
sasl_mechanism         PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
sasl_username/password SASL credentials
ssl_ca_pem             CA certificate(s) in PEM, to verify the brokers
ssl_ca_location        or a path to such a file
client_id              how the brokers name this client
auto_create_topics     create missing topics with the partitions and replication below
topic_partitions       partitions of auto-created topics
topic_replication      replication factor of auto-created topics
message_timeout_ms     how long one message may wait for its acknowledgement
extra                  further librdkafka settings, as a dict
=====================  ==============================================================
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cauldron_fabric.core.errors import (
	BrokerUnreachable,
	ConfigurationError,
	MessageRejected,
	TransportUnavailable,
)
from cauldron_fabric.core.ports import ConnectionReport, Delivery, OutboundMessage, Transport

log = logging.getLogger("cauldron_fabric.kafka")

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_MESSAGE_TIMEOUT_MS = 10_000
# Delivery reports are served (poll) once per this many messages produced rather than after
# each one: fewer calls into librdkafka, the same callbacks. A full queue polls at once, and
# waiting for the batch polls until every report is in.
POLL_EVERY = 64

# Errors a retry will not cure: the message or the topic itself is refused.
PERMANENT_CODES = {
	KafkaError.MSG_SIZE_TOO_LARGE,
	KafkaError.INVALID_MSG_SIZE,
	KafkaError.TOPIC_AUTHORIZATION_FAILED,
	KafkaError.TOPIC_EXCEPTION,
	KafkaError._INVALID_ARG,
	KafkaError.INVALID_RECORD,
	KafkaError.POLICY_VIOLATION,
}
# The client lost the cluster: every message to it fails alike until it is back. A message
# that timed out counts so only when the client's last error was one of these (a cluster that
# answers but takes one topic's messages too slowly may still take others').
CLUSTER_LOST_CODES = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
# The broker refuses the producer's id or epoch: after messages timed out in flight (a link
# that stalled, then healed) librdkafka bumps the epoch itself, which a broker may not accept,
# and then it refuses every later message of this producer. A fresh producer gets a new id.
PRODUCER_REFUSED_CODES = {
	KafkaError.INVALID_PRODUCER_EPOCH,
	KafkaError.PRODUCER_FENCED,
	KafkaError._FENCED,
	KafkaError.UNKNOWN_PRODUCER_ID,
	KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
}


class ClientLog(logging.LoggerAdapter):
	"""Passes librdkafka's log lines to ``log``, its broker connection failures (FAIL) at DEBUG.

	librdkafka logs one at every reconnect to a broker that is down, many a second, at ERROR: on
	the terminal of ``bench fabric relay`` or ``consume`` under the one line each says of an
	outage. The same failure reaches ``error_cb``, and through it their own errors. Every client
	of the fabric (producer, admin, consumers, the request-reply reader) logs through one.
	"""

	def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
		super().log(logging.DEBUG if args[:1] == ("FAIL",) else level, msg, *args, **kwargs)


def kafka_config(bootstrap: str, options: dict[str, Any]) -> dict[str, Any]:
	"""Returns the librdkafka settings shared by producer and admin client for these options."""
	if not bootstrap:
		raise ConfigurationError(
			"No Kafka bootstrap servers given.", hint="Set them as host:port, comma-separated."
		)
	protocol = (options.get("security_protocol") or "PLAINTEXT").upper()
	if protocol not in SECURITY_PROTOCOLS:
		raise ConfigurationError(
			f"Unknown Kafka security protocol {protocol!r}.",
			hint=f"Use one of {', '.join(SECURITY_PROTOCOLS)}.",
		)
	config: dict[str, Any] = {
		"bootstrap.servers": bootstrap,
		"security.protocol": protocol,
		"client.id": options.get("client_id") or "cauldron-fabric",
		"logger": ClientLog(log),
	}
	if protocol.startswith("SASL"):
		mechanism = (options.get("sasl_mechanism") or "PLAIN").upper()
		if mechanism not in SASL_MECHANISMS:
			raise ConfigurationError(
				f"Unknown SASL mechanism {mechanism!r}.", hint=f"Use one of {', '.join(SASL_MECHANISMS)}."
			)
		if not options.get("sasl_username") or not options.get("sasl_password"):
			raise ConfigurationError(
				f"Security protocol {protocol} needs a SASL username and password.",
				hint="Fill both in Fabric Settings, or choose PLAINTEXT or SSL.",
			)
		config.update(
			{
				"sasl.mechanism": mechanism,
				"sasl.username": options["sasl_username"],
				"sasl.password": options["sasl_password"],
			}
		)
	if options.get("ssl_ca_pem"):
		config["ssl.ca.pem"] = options["ssl_ca_pem"]
	elif options.get("ssl_ca_location"):
		config["ssl.ca.location"] = options["ssl_ca_location"]
	config.update(options.get("extra") or {})
	return config


def _creation_refusal(future, timeout: float) -> str | None:
	"""Returns why a topic creation failed, or None when the topic exists now.

	A broker that takes the request and never answers leaves the future pending: its
	TimeoutError is a failed creation too, not an error that stops the relay.
	"""
	try:
		future.result(timeout)
	except KafkaException as exc:
		if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
			return exc.args[0].str()
	except TimeoutError:
		return f"no answer to the creation within {timeout:g} s"
	return None


def uncarriable(message: OutboundMessage, error: Exception) -> MessageRejected:
	"""Explains a message the Kafka client refused to encode; permanent, nothing was sent.

	Header values must be text (UTF-8: no lone surrogates) or bytes; an envelope written
	around the Envelope class (raw SQL) may hold a number or an object there.
	"""
	return MessageRejected(
		f"The message for topic {message.destination!r} cannot be carried by Kafka "
		f"({type(error).__name__}: {str(error)[:200]}).",
		hint="Its key and header values (the envelope's id, type, source, time and metadata) must be "
		"text; correct the event's envelope, then retry.",
	)


class KafkaTransport(Transport):
	"""Publishes through one idempotent producer; creates missing topics when allowed."""

	scheme = "kafka"

	def __init__(self, bootstrap: str, options: dict[str, Any] | None = None):
		self.options = dict(options or {})
		self.base_config = kafka_config(bootstrap, self.options)
		self.bootstrap = bootstrap
		self.message_timeout_ms = int(self.options.get("message_timeout_ms") or DEFAULT_MESSAGE_TIMEOUT_MS)
		self.auto_create = bool(self.options.get("auto_create_topics", True))
		self.partitions = max(1, int(self.options.get("topic_partitions") or 3))
		self.replication = max(1, int(self.options.get("topic_replication") or 1))
		self._producer: Producer | None = None
		self._admin: AdminClient | None = None
		self._known_topics: set[str] = set()
		# Why the last creation of a topic failed, for the messages that then find it missing.
		self._refused_topics: dict[str, str] = {}
		self._last_client_error: str | None = None
		self._last_client_code: int | None = None
		self._producer_fatal = False
		self._lock = threading.Lock()

	@classmethod
	def from_url(cls, url: str, options: dict[str, Any]) -> KafkaTransport:
		"""Builds the transport from ``kafka://host:port,host:port``."""
		parts = urlsplit(url)
		bootstrap = unquote(parts.netloc or parts.path.lstrip("/"))
		return cls(bootstrap, options)

	def _on_client_error(self, error: KafkaError) -> None:
		self._last_client_error = f"{error.name()}: {error.str()}"
		self._last_client_code = error.code()
		if error.fatal():
			# An idempotent producer that lost its producer id (broker state lost or expired)
			# can never send again; a fresh one is built before the next batch.
			self._producer_fatal = True

	@property
	def producer(self) -> Producer:
		"""Returns the idempotent producer, creating it on first use or after a fatal error."""
		if self._producer_fatal:
			log.warning("replacing the Kafka producer after a fatal error: %s", self._last_client_error)
			self._producer, self._producer_fatal = None, False
		if self._producer is None:
			config = {
				**self.base_config,
				"enable.idempotence": True,
				"acks": "all",
				"linger.ms": int(self.options.get("linger_ms", 5)),
				"message.timeout.ms": self.message_timeout_ms,
				"error_cb": self._on_client_error,
			}
			try:
				self._producer = Producer(config)
			except KafkaException as exc:
				raise ConfigurationError(f"Kafka rejected the producer settings: {exc}.") from exc
		return self._producer

	@property
	def admin(self) -> AdminClient:
		"""Returns the admin client used for topic creation and connection checks."""
		if self._admin is None:
			self._admin = AdminClient({**self.base_config, "error_cb": self._on_client_error})
		return self._admin

	def _admin_cause(self, exc: KafkaException) -> str:
		"""Returns why the admin client got no answer: the client's own error when it has one.

		list_topics says only "Broker transport failure"; the reason (a SASL authentication
		refused, a TLS handshake failed) reaches error_cb, which runs only when the client is polled.
		"""
		self.admin.poll(0)
		return self._last_client_error or str(exc)

	def ensure_topics(self, topics: set[str], timeout: float = 10.0) -> None:
		"""Creates topics that do not exist yet with the configured partitions and replication."""
		missing = topics - self._known_topics
		if not missing or not self.auto_create:
			return
		try:
			existing = set(self.admin.list_topics(timeout=timeout).topics)
		except KafkaException as exc:
			raise BrokerUnreachable(
				f"Kafka at {self.bootstrap} did not answer a metadata request: {self._admin_cause(exc)}.",
				hint="Check the bootstrap servers, the security protocol and the credentials; events wait "
				"and are retried.",
			) from exc
		self._known_topics |= existing & missing
		to_create = missing - existing
		if not to_create:
			return
		futures = self.admin.create_topics(
			[NewTopic(t, self.partitions, self.replication) for t in sorted(to_create)],
			request_timeout=timeout,
		)
		for topic, future in futures.items():
			refusal = _creation_refusal(future, timeout)
			if refusal:
				log.warning("could not create topic %s: %s", topic, refusal)
				self._refused_topics[topic] = refusal
				continue
			self._refused_topics.pop(topic, None)
			self._known_topics.add(topic)

	def publish(self, messages: Sequence[OutboundMessage], timeout: float) -> list[Delivery]:
		"""Produces every message and waits until each has a definitive delivery report."""
		return self.publish_async(messages)(timeout)

	def publish_async(self, messages: Sequence[OutboundMessage]) -> Callable[[float], list[Delivery]]:
		"""Queues every message in the producer now; the returned function waits for their reports."""
		if not messages:
			return lambda timeout: []
		with self._lock:
			try:
				self.ensure_topics({m.destination for m in messages})
			except TransportUnavailable as exc:
				failed = [Delivery(False, m.destination, error=exc) for m in messages]
				return lambda timeout: failed
			producer = self.producer
			results: list[Delivery | None] = [None] * len(messages)
			for index, message in enumerate(messages):
				self._produce_one(
					producer, message, self._reporter(results, index, message.destination), results, index
				)
		return lambda timeout: self._wait_for(producer, messages, results, timeout)

	def _reporter(self, results: list, index: int, destination: str):
		def on_delivery(err: KafkaError | None, msg) -> None:
			if err is None:
				results[index] = Delivery(True, destination, partition=msg.partition(), offset=msg.offset())
			else:
				if err.code() in PRODUCER_REFUSED_CODES and not self._producer_fatal:
					self._last_client_error = f"{err.name()}: {err.str()}"
					self._producer_fatal = True  # replaced before the next batch
				results[index] = Delivery(False, destination, error=self._classify(err, destination))

		return on_delivery

	def _wait_for(
		self, producer: Producer, messages: Sequence[OutboundMessage], results: list, timeout: float
	) -> list[Delivery]:
		# A message stays in librdkafka's queue until acknowledged or message.timeout.ms passes,
		# so wait for that long: giving up earlier would republish it while it may still land.
		deadline = time.monotonic() + max(timeout, self.message_timeout_ms / 1000 + 5)
		missing, unavailable = f"No acknowledgement from {self.bootstrap}.", BrokerUnreachable
		try:
			while None in results and time.monotonic() < deadline:
				producer.poll(0.05)
		except (KafkaException, SystemError) as exc:
			# librdkafka raises fatal idempotence errors (producer id lost after a broker
			# restart) out of poll(); this producer is done, a fresh one takes the retries.
			log.warning("Kafka producer failed fatally, replacing it: %s", exc)
			self._producer_fatal = True
			missing = "The Kafka producer hit a fatal error (broker lost its producer state) and is replaced; the events are retried."
			unavailable = TransportUnavailable
		return [
			r or Delivery(False, m.destination, error=unavailable(missing))
			for r, m in zip(results, messages, strict=True)
		]

	def _produce_one(self, producer: Producer, message: OutboundMessage, callback, results, index) -> None:
		while True:
			try:
				# A str key goes in as is: confluent-kafka encodes it as UTF-8 itself.
				producer.produce(
					message.destination,
					value=message.body,
					key=message.key,
					headers=list(message.headers),
					on_delivery=callback,
				)
				if index % POLL_EVERY == 0:
					producer.poll(0)
				return
			except BufferError:
				producer.poll(0.05)
			except KafkaException as exc:
				results[index] = Delivery(
					False, message.destination, error=self._classify(exc.args[0], message.destination)
				)
				return
			except (TypeError, ValueError) as exc:
				# Raised out of produce(), it stopped the relay with the batch's earlier messages
				# already queued, and they went out again with the retry.
				results[index] = Delivery(False, message.destination, error=uncarriable(message, exc))
				return

	def _classify(self, err: KafkaError, destination: str):
		text = f"Kafka refused the message for topic {destination!r}: {err.name()} ({err.str()})."
		if err.code() in PERMANENT_CODES:
			return MessageRejected(
				text, hint="Fix the topic or the message; the event stays in the Event Log as Failed."
			)
		detail = f" Last client error: {self._last_client_error}." if self._last_client_error else ""
		if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
			return self._missing_topic(destination)
		lost = err.code() in CLUSTER_LOST_CODES or (
			err.code() == KafkaError._MSG_TIMED_OUT and self._last_client_code in CLUSTER_LOST_CODES
		)
		unavailable = BrokerUnreachable if lost else TransportUnavailable
		return unavailable(f"Kafka at {self.bootstrap} did not take the message: {err.str()}.{detail}")

	def _missing_topic(self, destination: str) -> TransportUnavailable:
		refusal = self._refused_topics.get(destination)
		if refusal:
			return TransportUnavailable(
				f"Topic {destination!r} does not exist on {self.bootstrap} and the fabric could not create it: {refusal}.",
				hint="Create the topic, or fix what the broker refused (ACLs, partitions, replication); events wait meanwhile.",
			)
		return TransportUnavailable(
			f"Topic {destination!r} does not exist on {self.bootstrap}.",
			hint="Create it, or allow topic auto-creation in Fabric Settings; events wait meanwhile.",
		)

	def check(self, timeout: float) -> ConnectionReport:
		"""Reads cluster metadata and reports brokers, cluster id and topic count."""
		self._last_client_error = self._last_client_code = None
		try:
			metadata = self.admin.list_topics(timeout=timeout)
		except KafkaException as exc:
			detail = self._admin_cause(exc)
			return ConnectionReport(
				False,
				f"No Kafka broker answered at {self.bootstrap} within {timeout:g} s ({detail}). "
				"Check the bootstrap servers, the security protocol and the credentials.",
			)
		brokers = ", ".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())
		topics = [t for t in metadata.topics if not t.startswith("__")]
		return ConnectionReport(
			True,
			f"Connected to Kafka cluster {metadata.cluster_id or '(no id)'}: {len(metadata.brokers)} broker(s), "
			f"{len(topics)} topic(s).",
			(("brokers", brokers), ("cluster_id", str(metadata.cluster_id)), ("topics", str(len(topics)))),
		)

	def close(self) -> None:
		"""Flushes what is queued (briefly) and drops the clients."""
		if self._producer is not None:
			self._producer.flush(2)
		self._producer = None
		self._admin = None
