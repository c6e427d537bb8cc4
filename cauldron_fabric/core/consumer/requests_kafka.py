"""Request-reply on Kafka: requests to the target topic, replies on a shared reply topic.

Each requester reads one partition of the reply topic, assigned directly (no group join, so it
is ready at once) from its end offset, and names that partition in ``fabric-reply-partition``;
requesters sharing a partition skip each other's replies by correlation id. One background
thread reads replies and hands each to the waiting call, so many threads can request at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import zlib
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition

from cauldron_fabric.core.cloudevents import from_headers, kafka_headers
from cauldron_fabric.core.consumer.messages import (
	CORRELATION_ID,
	DEFAULT_REPLY_TOPIC,
	REPLY_DEADLINE,
	REPLY_PARTITION,
	REPLY_TO,
	text,
)
from cauldron_fabric.core.consumer.requests import Requester, timeout_error
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import ConfigurationError, InvalidEnvelope, TransportUnavailable
from cauldron_fabric.core.ports import OutboundMessage
from cauldron_fabric.core.transports.kafka import ClientLog, KafkaTransport, kafka_config

log = logging.getLogger("cauldron_fabric.requests.kafka")


class KafkaRequester(Requester):
	"""Requests over Kafka; thread-safe."""

	broker = "kafka"

	def __init__(
		self,
		bootstrap: str,
		*,
		reply_topic: str = DEFAULT_REPLY_TOPIC,
		options: dict[str, Any] | None = None,
		**requester_options: Any,
	):
		super().__init__(**requester_options)
		self.options = dict(options or {})
		self.bootstrap, self.reply_topic = bootstrap, reply_topic
		# Requests go out one by one to a waiting caller: no batching delay.
		self.transport = KafkaTransport(bootstrap, {"linger_ms": 0, **self.options})
		self.transport.ensure_topics({reply_topic})
		self.instance = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
		self._waiting: dict[str, tuple[threading.Event, list[Envelope]]] = {}
		self._lock = threading.Lock()
		self._stopping = threading.Event()
		self._consumer = Consumer(
			{
				**kafka_config(bootstrap, {**self.options, "extra": {}}),
				"group.id": f"fabric-requester-{self.instance}",
				"enable.auto.commit": False,
				# A waiting caller should not wait for the broker's fetch timer (librdkafka: 500 ms).
				"fetch.wait.max.ms": int(self.options.get("reply_fetch_wait_ms") or 100),
				"logger": ClientLog(log),
			}
		)
		self.reply_partition = self._assign_reply_partition()
		self._reader = threading.Thread(target=self._read_replies, name="fabric-replies", daemon=True)
		self._reader.start()

	def _assign_reply_partition(self) -> int:
		try:
			metadata = self._consumer.list_topics(self.reply_topic, timeout=10)
			count = len(metadata.topics[self.reply_topic].partitions) or 1
			partition = zlib.crc32(self.instance.encode()) % count
			_, high = self._consumer.get_watermark_offsets(
				TopicPartition(self.reply_topic, partition), timeout=10
			)
		except (KafkaException, KeyError) as exc:
			self._consumer.close()
			raise TransportUnavailable(
				f"Kafka at {self.bootstrap} did not describe the reply topic {self.reply_topic!r}: {exc}."
			) from exc
		# From the end as it is now: a reply can only come after the request, which comes after this.
		self._consumer.assign([TopicPartition(self.reply_topic, partition, max(0, high))])
		return partition

	def _read_replies(self) -> None:
		while not self._stopping.is_set():
			try:
				message = self._consumer.poll(0.1)
			except (KafkaException, RuntimeError) as exc:
				if self._stopping.is_set():
					return
				log.warning("reply reader: %s", exc)
				continue
			if message is None or message.error():
				continue
			headers = dict((name, text(value)) for name, value in (message.headers() or ()))
			if REPLY_TO in headers:
				continue  # a request (it carries the same correlation id), never a reply
			correlation = headers.get(CORRELATION_ID)
			with self._lock:
				waiter = self._waiting.get(correlation or "")
			if waiter is None:
				continue  # another requester's reply, or one that came too late
			try:
				waiter[1].append(from_headers(message.headers(), message.value()))
			except InvalidEnvelope as exc:
				log.warning("reply %s is not an envelope: %s", correlation, exc)
				continue
			waiter[0].set()

	def check_target(self, target: str) -> None:
		if target == self.reply_topic:
			raise ConfigurationError(
				f"Requests cannot go to {target!r}: it is the requesters' reply topic, where no"
				" responder listens.",
				hint="Send the request to the responders' topic, or give the requesters another reply topic.",
			)

	def exchange(self, request: Envelope, target: str, timeout: float) -> Envelope:
		"""Publishes the request to ``target`` and waits for the reply with its id."""
		arrived, box = threading.Event(), []
		with self._lock:
			self._waiting[request.id] = (arrived, box)
		try:
			deadline_ms = int((time.time() + timeout) * 1000)
			headers = (
				*kafka_headers(request),
				(REPLY_TO, self.reply_topic),
				(REPLY_PARTITION, str(self.reply_partition)),
				(CORRELATION_ID, request.id),
				(REPLY_DEADLINE, str(deadline_ms)),
			)
			message = OutboundMessage(target, request.id, request.to_json().encode(), headers)
			delivery = self.transport.publish([message], timeout)[0]
			if not delivery.ok:
				raise delivery.error or TransportUnavailable(
					f"Kafka did not take the request for {target!r}."
				)
			remaining = max(0.0, deadline_ms / 1000 - time.time())
			if not arrived.wait(remaining):
				raise timeout_error(request, target, timeout, f"Kafka at {self.bootstrap}")
			return box[0]
		finally:
			with self._lock:
				self._waiting.pop(request.id, None)

	def close(self) -> None:
		"""Stops the reply reader and closes the clients."""
		self._stopping.set()
		self._reader.join(2)
		try:
			self._consumer.close()
		except RuntimeError:
			pass
		self.transport.close()
