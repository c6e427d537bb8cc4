"""Request-reply on RabbitMQ: requests on the topic exchange, replies by direct reply-to.

A request is published with the event type as routing key, ``reply_to=amq.rabbitmq.reply-to``,
the request id as ``correlation_id`` and the timeout as message TTL (a request nobody took in
time expires instead of being served late). Responders are the competing consumers of a
group's queue bound to that routing key. Calls from several threads share the one channel:
each waits for the reply with its own correlation id while whichever holds the connection reads
for everyone, so a slow target never delays another call past its timeout. Requests are
published without confirms, mandatory: a request no queue is bound to comes back (a return)
while its call waits, and that wait is bounded by the timeout, whereas the wait for a confirm
was not: a broker that stopped answering held the call until the heartbeat gave up, minutes.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pika
import pika.exceptions

from cauldron_fabric.core.cloudevents import from_headers, kafka_headers
from cauldron_fabric.core.consumer.messages import REPLY_DEADLINE
from cauldron_fabric.core.consumer.rabbitmq import AMQP_ERRORS
from cauldron_fabric.core.consumer.rabbitmq_messages import amqp_header
from cauldron_fabric.core.consumer.rabbitmq_publishing import DIRECT_REPLY_TO
from cauldron_fabric.core.consumer.requests import Requester, timeout_error
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import InvalidEnvelope, TransportUnavailable
from cauldron_fabric.core.transports.amqp import DEFAULT_EXCHANGE, connection_parameters


class RabbitMQRequester(Requester):
	"""Requests over RabbitMQ with direct reply-to; reconnects after a lost connection."""

	broker = "amqp"

	def __init__(self, url: str, *, options: dict[str, Any] | None = None, **requester_options: Any):
		super().__init__(**requester_options)
		self.options = dict(options or {})
		self.exchange_name = self.options.get("exchange") or DEFAULT_EXCHANGE
		self.parameters = connection_parameters(url, self.options)
		self.where = f"RabbitMQ at {self.parameters.host}:{self.parameters.port}"
		self._connection = None
		self._channel = None
		# Correlation id -> (arrived, [reply, or the error of a returned request]) of every waiting call.
		self._waiting: dict[str, tuple[threading.Event, list[Envelope | TransportUnavailable]]] = {}
		self._lock = threading.Lock()  # whoever holds it uses the connection

	def target_for(self, event_type: str) -> str:
		"""Returns the routing key of a request type: the type itself."""
		return event_type

	def _open(self) -> None:
		if self._channel is not None and self._channel.is_open:
			try:
				# Between requests nothing answers the broker's heartbeats, so it may have dropped
				# an idle connection meanwhile: find out (and answer them) before sending on it.
				self._connection.process_data_events(time_limit=0)
			except AMQP_ERRORS:
				self._drop()
		if self._channel is not None and self._channel.is_open:
			return
		try:
			self._connection = pika.BlockingConnection(self.parameters)
			channel = self._connection.channel()
			channel.exchange_declare(self.exchange_name, "topic", durable=True)
			channel.basic_consume(DIRECT_REPLY_TO, self._on_reply, auto_ack=True)
			channel.add_on_return_callback(self._on_return)
		except AMQP_ERRORS as exc:
			self._drop()
			raise TransportUnavailable(f"Cannot open a request channel on {self.where}: {exc!r}.") from exc
		self._channel = channel

	def _on_reply(self, channel, method, properties, body: bytes) -> None:
		waiter = self._waiting.get(properties.correlation_id or "")
		if waiter is None:
			return  # a reply that came after its request timed out
		headers = {name: amqp_header(name, value) for name, value in (properties.headers or {}).items()}
		headers["content-type"] = properties.content_type or "application/json"
		try:
			reply = from_headers(headers, body)
		except InvalidEnvelope:
			return
		arrived, box = waiter
		box.append(reply)
		arrived.set()

	def _on_return(self, channel, method, properties, body: bytes) -> None:
		waiter = self._waiting.get(properties.correlation_id or "")
		if waiter is None:
			return
		arrived, box = waiter
		box.append(
			TransportUnavailable(
				f"No responder queue is bound to {method.routing_key!r} on exchange {method.exchange!r}.",
				hint="Start a consumer group whose handlers answer this request type.",
			)
		)
		arrived.set()

	def exchange(self, request: Envelope, target: str, timeout: float) -> Envelope:
		"""Publishes the request with routing key ``target`` and waits for the correlated reply."""
		deadline = time.time() + timeout
		arrived, box = threading.Event(), []
		if not self._lock.acquire(timeout=timeout):
			raise timeout_error(request, target, timeout, self.where)
		try:
			self._open()
			connection = self._connection
			headers = {f"cloudEvents_{k[3:]}": v for k, v in kafka_headers(request) if k.startswith("ce_")}
			headers[REPLY_DEADLINE] = str(int(deadline * 1000))
			properties = pika.BasicProperties(
				headers=headers,
				content_type="application/json",
				correlation_id=request.id,
				reply_to=DIRECT_REPLY_TO,
				message_id=request.id,
				type=request.type,
				expiration=str(max(1, int((deadline - time.time()) * 1000))),
			)
			self._waiting[request.id] = (arrived, box)
			self._publish(request, target, properties)
		except BaseException:
			self._waiting.pop(request.id, None)
			raise
		finally:
			self._lock.release()
		try:
			while not arrived.is_set() and (remaining := deadline - time.time()) > 0:
				if not self._lock.acquire(timeout=min(remaining, 0.05)):
					continue  # another call reads the connection, for this one's reply too
				try:
					if self._connection is not connection:
						raise TransportUnavailable(
							f"Lost {self.where} during a request; its reply cannot come."
						)
					if not arrived.is_set():
						self._connection.process_data_events(time_limit=min(remaining, 0.05))
				except AMQP_ERRORS as exc:
					self._drop()
					raise TransportUnavailable(f"Lost {self.where} during a request: {exc!r}.") from exc
				finally:
					self._lock.release()
				arrived.wait(0.002)  # lets a call waiting for the connection take it
		finally:
			self._waiting.pop(request.id, None)
		if not box:
			raise timeout_error(request, target, timeout, self.where)
		if isinstance(box[0], TransportUnavailable):
			raise box[0]
		return box[0]

	def _publish(self, request: Envelope, target: str, properties: pika.BasicProperties) -> None:
		try:
			self._channel.basic_publish(
				self.exchange_name, target, request.to_json().encode(), properties, mandatory=True
			)
		except AMQP_ERRORS as exc:
			self._drop()
			raise TransportUnavailable(f"Lost {self.where} during a request: {exc!r}.") from exc

	def _drop(self) -> None:
		connection, self._connection, self._channel = self._connection, None, None
		if connection is not None and connection.is_open:
			try:
				connection.close()
			except AMQP_ERRORS:
				pass

	def close(self) -> None:
		"""Closes the connection."""
		with self._lock:
			self._drop()
