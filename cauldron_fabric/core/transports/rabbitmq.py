"""RabbitMQ through pika: durable topic exchanges, persistent messages, publisher confirms.

``amqp://user:password@host:5672/vhost`` (vhost URL-encoded, ``%2F`` for ``/``; pika's query
parameters such as ``heartbeat`` work too). Options: ``exchange`` (for destinations without
one, default ``cauldron.events``), ``exchange_type`` (of exchanges declared on first use,
default ``topic``), ``declare_exchanges`` (default on; off: exchanges must exist), ``mandatory``
(refuse messages no queue is bound for, default on), ``cloudevents_binding`` (``amqp``:
``cloudEvents_`` headers, the default; ``rabbitmq``: ``ce-``), ``connection_timeout`` (seconds,
default 5), ``max_message_size`` (bytes, the broker's ``max_message_size``, default 128 MiB:
larger bodies are refused for good without being sent) and ``app_id``.

Destinations are ``exchange/routing.key``; without ``/`` the destination is a routing key on
the ``exchange`` option's exchange, and ``/queue`` goes through the default exchange straight
to a queue. ``ce_*``, ``ce-*`` and ``cloudEvents_*`` headers become the binding's application
headers, ``content-type`` the ``content_type`` property, and the message key the CloudEvents
partitioning extension ``partitionkey`` (a consistent-hash exchange with ``hash-header`` keeps
each entity in order). RabbitMQ has no partitions: a Delivery reports partition 0 and, as
offset, the message's publisher-confirm sequence number on its channel.

Publishing drives pika's SelectConnection synchronously: a batch is written in one go and the
broker's cumulative confirms are collected after it, instead of one round trip (and, for a
durable queue, one disk sync) per message as with BlockingConnection's ``confirm_delivery``;
``tests/benchmarks/bench_rabbitmq.py`` measures the difference.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import SelectConnection

from cauldron_fabric.core.errors import (
	ConfigurationError,
	FabricError,
	MessageRejected,
	RetryableError,
	TransportUnavailable,
)
from cauldron_fabric.core.ports import ConnectionReport, Delivery, OutboundMessage, Transport
from cauldron_fabric.core.urls import redact_text, redact_url

DEFAULT_EXCHANGE = "cauldron.events"
BINDING_PREFIXES = {"amqp": "cloudEvents_", "rabbitmq": "ce-"}
CLOUDEVENTS_PREFIXES = ("ce_", "ce-", "cloudevents_", "cloudevents:")
PERSISTENT = 2
# Seconds of idleness after which the connection is rebuilt before use: between publishes no
# loop answers the broker's heartbeats, so it may have dropped us meanwhile.
IDLE_RECONNECT = 20.0
# RabbitMQ's default max_message_size; a larger body makes the broker close the channel.
MAX_MESSAGE_SIZE = 128 * 1024 * 1024
# What pika raises for a message AMQP cannot carry (a routing key, message id or type over 255
# bytes, a header value of no AMQP type), before anything is written.
UNENCODABLE = (
	pika.exceptions.ShortStringTooLong,
	pika.exceptions.UnsupportedAMQPFieldException,
	TypeError,
	ValueError,
)
TOO_LARGE = re.compile(r"message size (\d+) is larger than configured max size (\d+)")


class BrokerNack(RetryableError):
	"""RabbitMQ refused to take a message (queue full with reject-publish, internal error)."""


class MessageUnroutable(MessageRejected):
	"""No queue is bound for a message published as mandatory."""


@dataclass(frozen=True, slots=True)
class AmqpAddress:
	"""Where one message goes: an exchange and a routing key."""

	exchange: str
	routing_key: str


@dataclass(frozen=True, slots=True)
class QueueTopology:
	"""The names ``declare_queue`` set up: the queue, its exchange, and its dead-letter pair."""

	queue: str
	exchange: str
	binding_keys: tuple[str, ...]
	dead_letter_exchange: str | None = None
	dead_letter_queue: str | None = None


def parse_destination(destination: str, default_exchange: str = DEFAULT_EXCHANGE) -> AmqpAddress:
	"""Splits ``exchange/routing.key``; without ``/`` the whole text is a key on the default exchange."""
	exchange, slash, routing_key = destination.partition("/")
	return AmqpAddress(exchange, routing_key) if slash else AmqpAddress(default_exchange, destination)


def amqp_properties(message: OutboundMessage, prefix: str, app_id: str) -> pika.BasicProperties:
	"""Returns persistent message properties carrying the message's headers in the binding's form."""
	headers: dict[str, Any] = {}
	content_type = None
	for name, value in message.headers:
		lowered = name.lower()
		if lowered in ("content-type", "content_type"):
			content_type = value
			continue
		known = next((p for p in CLOUDEVENTS_PREFIXES if lowered.startswith(p)), None)
		headers[prefix + lowered[len(known) :] if known else name] = value
	if message.key:
		headers.setdefault(prefix + "partitionkey", message.key)
	return pika.BasicProperties(
		content_type=content_type,
		delivery_mode=PERSISTENT,
		headers=headers,
		message_id=headers.get(prefix + "id"),
		type=headers.get(prefix + "type"),
		app_id=app_id,
		timestamp=int(time.time()),
	)


def connection_parameters(url: str, options: dict[str, Any]) -> pika.URLParameters:
	"""Returns pika's parameters for the URL with the fabric's timeouts applied."""
	try:
		parameters = pika.URLParameters(url)
	except Exception as exc:
		raise ConfigurationError(
			f"The RabbitMQ URL {redact_url(url)!r} is malformed ({redact_text(str(exc), url)}).",
			hint="Use amqp://user:password@host:5672/vhost.",
		) from exc
	timeout = float(options.get("connection_timeout") or 5)
	parameters.socket_timeout = timeout
	parameters.stack_timeout = timeout
	parameters.blocked_connection_timeout = timeout
	return parameters


class RabbitMQTransport(Transport):
	"""Publishes to exchanges over one confirming channel; reconnects after any failure."""

	scheme = "amqp"

	def __init__(self, url: str, options: dict[str, Any] | None = None):
		self.options = dict(options or {})
		self.url = url
		self.parameters = connection_parameters(url, self.options)
		self.where = f"{self.parameters.host}:{self.parameters.port} (vhost {self.parameters.virtual_host!r})"
		self.exchange = self.options.get("exchange") or DEFAULT_EXCHANGE
		self.exchange_type = self.options.get("exchange_type") or "topic"
		self.declare_exchanges = bool(self.options.get("declare_exchanges", True))
		self.mandatory = bool(self.options.get("mandatory", True))
		binding = self.options.get("cloudevents_binding") or "amqp"
		if binding not in BINDING_PREFIXES:
			raise ConfigurationError(
				f"Unknown CloudEvents binding {binding!r} for RabbitMQ.",
				hint=f"Use one of {', '.join(BINDING_PREFIXES)}.",
			)
		self.prefix = BINDING_PREFIXES[binding]
		self.app_id = self.options.get("app_id") or "cauldron-fabric"
		self.max_message_size = int(self.options.get("max_message_size") or MAX_MESSAGE_SIZE)
		self._lock = threading.Lock()
		self._connection: SelectConnection | None = None
		self._channel = None
		self._failure: FabricError | None = None
		self._channel_error: Exception | None = None
		self._selected = False
		self._until: Callable[[], bool] | None = None
		self._declared: set[str] = set()
		self._pending: dict[int, tuple[int, AmqpAddress]] = {}
		self._returned: dict[int, str] = {}
		self._results: list[Delivery | None] = []
		self._destinations: list[str] = []
		self._sizes: list[int] = []
		self._message_ids: list[str | None] = []
		self._next_tag = 0
		self._last_used = 0.0

	@classmethod
	def from_url(cls, url: str, options: dict[str, Any]) -> RabbitMQTransport:
		"""Builds the transport from ``amqp://user:password@host:port/vhost``."""
		return cls(url, options)

	# -- publishing ------------------------------------------------------------------------

	def publish(self, messages: Sequence[OutboundMessage], timeout: float) -> list[Delivery]:
		"""Publishes every message persistently and waits for the broker's confirms."""
		if not messages:
			return []
		with self._lock:
			deadline = time.monotonic() + timeout
			addresses = [parse_destination(m.destination, self.exchange) for m in messages]
			try:
				self._open(deadline)
				refused = self._ensure_exchanges({a.exchange for a in addresses}, deadline)
			except FabricError as exc:
				self._disconnect()
				return [Delivery(False, m.destination, error=exc) for m in messages]
			self._results = [None] * len(messages)
			self._destinations = [m.destination for m in messages]
			self._sizes = [len(m.body) for m in messages]
			self._message_ids = [None] * len(messages)
			try:
				for index, (message, address) in enumerate(zip(messages, addresses, strict=True)):
					if address.exchange in refused:
						self._results[index] = Delivery(
							False, message.destination, error=refused[address.exchange]
						)
						continue
					if len(message.body) > self.max_message_size:
						# The broker would close the channel and lose the rest of the batch with it.
						self._results[index] = Delivery(
							False,
							message.destination,
							error=_too_large(len(message.body), self.max_message_size),
						)
						continue
					try:
						properties = amqp_properties(message, self.prefix, self.app_id)
						self._message_ids[index] = properties.message_id
						# pika encodes the whole message before writing any of it: a refusal here
						# sent nothing and used no sequence number on the channel.
						self._channel.basic_publish(
							address.exchange, address.routing_key, message.body, properties, self.mandatory
						)
					except UNENCODABLE as exc:
						self._results[index] = Delivery(
							False, message.destination, error=_unencodable(address, exc)
						)
						continue
					self._next_tag += 1
					self._pending[self._next_tag] = (index, address)
				self._wait(lambda: not self._pending or self._failure is not None, deadline)
			except BaseException:
				# Confirms of what went out are unaccounted for: start the next batch on a fresh channel.
				self._disconnect()
				self._pending, self._returned, self._results, self._destinations = {}, {}, [], []
				raise
			return self._collect()

	def _collect(self) -> list[Delivery]:
		unconfirmed = self._failure or TransportUnavailable(
			f"RabbitMQ at {self.where} did not confirm the message in time.",
			hint="The event is retried; check the broker's load and alarms (memory, disk).",
		)
		if self._pending:
			# The channel's sequence numbers are unknown after a timeout: start over on a fresh one.
			self._disconnect()
		results = [
			r or Delivery(False, d, error=unconfirmed)
			for r, d in zip(self._results, self._destinations, strict=True)
		]
		self._pending, self._returned, self._results, self._destinations = {}, {}, [], []
		self._sizes, self._message_ids = [], []
		self._last_used = time.monotonic()
		return results

	def _on_confirm(self, frame) -> None:
		tag, acked = frame.method.delivery_tag, isinstance(frame.method, pika.spec.Basic.Ack)
		settled = [tag]
		if frame.method.multiple:
			# Pending tags are in publishing order, so the confirmed ones are a prefix.
			settled = list(itertools.takewhile(lambda pending: pending <= tag, self._pending))
		for confirmed in settled:
			index, address = self._pending.pop(confirmed, (None, None))
			if index is not None:
				self._results[index] = self._delivery(index, address, confirmed, acked)
		self._poke()

	def _delivery(self, index: int, address: AmqpAddress, tag: int, acked: bool) -> Delivery:
		destination = self._destinations[index]
		if not acked:
			error = BrokerNack(
				f"RabbitMQ refused the message for exchange {address.exchange!r} (negative confirm).",
				hint="A queue may be full with overflow=reject-publish; the event is retried.",
			)
			return Delivery(False, destination, error=error)
		if index in self._returned:
			error = MessageUnroutable(
				f"No queue is bound to exchange {address.exchange!r} for routing key "
				f"{address.routing_key!r} ({self._returned[index]}).",
				hint="Bind a queue for it (or turn 'mandatory' off to let such messages drop), then retry.",
			)
			return Delivery(False, destination, error=error)
		return Delivery(True, destination, partition=0, offset=tag)

	def _on_return(self, channel, method, properties, body) -> None:
		# A return precedes the confirm of the same message, and returns come in publishing
		# order, so it belongs to the oldest unconfirmed, unreturned message with its address
		# and message id: where headers route (a headers exchange), a message to the same
		# address may have been routed before it and still wait for its confirm.
		address = AmqpAddress(method.exchange, method.routing_key)
		for index, pending_address in self._pending.values():
			if (
				pending_address == address
				and self._message_ids[index] == properties.message_id
				and index not in self._returned
			):
				self._returned[index] = f"{method.reply_code} {method.reply_text}"
				return

	# -- connection and channel ------------------------------------------------------------

	def _open(self, deadline: float) -> None:
		if self._connection is not None and time.monotonic() - self._last_used > IDLE_RECONNECT:
			self._disconnect()
		if self._channel is not None and self._channel.is_open and self._connection.is_open:
			return
		self._failure = None
		if self._connection is None or not self._connection.is_open:
			self._disconnect()
			self._connection = SelectConnection(
				self.parameters,
				on_open_callback=lambda _conn: self._open_channel(),
				on_open_error_callback=self._on_open_error,
				on_close_callback=self._on_connection_closed,
			)
		else:
			self._open_channel()
		if not self._wait(lambda: self._failure is not None or self._ready(), deadline):
			self._failure = self._failure or TransportUnavailable(
				f"RabbitMQ at {self.where} did not open a channel in time."
			)
		if self._failure is not None:
			raise self._failure

	def _ready(self) -> bool:
		return self._channel is not None and self._channel.is_open and self._selected

	def _open_channel(self) -> None:
		self._selected, self._next_tag = False, 0
		self._connection.channel(on_open_callback=self._on_channel_open)

	def _on_channel_open(self, channel) -> None:
		self._channel = channel
		channel.add_on_close_callback(self._on_channel_closed)
		channel.add_on_return_callback(self._on_return)
		channel.confirm_delivery(self._on_confirm, callback=self._on_selected)

	def _on_selected(self, _frame) -> None:
		self._selected = True
		self._poke()

	def _on_open_error(self, _connection, error) -> None:
		self._failure = _connection_error(error, self.where, self.parameters)
		self._poke()

	def _on_connection_closed(self, _connection, reason) -> None:
		self._failure = self._failure or TransportUnavailable(
			f"Lost the connection to RabbitMQ at {self.where}: {reason}.", hint="The events are retried."
		)
		self._channel = None
		self._poke()

	def _on_channel_closed(self, channel, reason) -> None:
		if channel is self._channel:
			self._channel = None
			self._channel_error = reason
			if self._pending:
				self._refuse_too_large(str(reason))
				self._failure = TransportUnavailable(
					f"RabbitMQ closed the publishing channel: {reason}.", hint="The events are retried."
				)
		self._poke()

	def _refuse_too_large(self, reason: str) -> None:
		"""Fails for good the unconfirmed message whose size made the broker close the channel."""
		found = TOO_LARGE.search(reason)
		if found is None:
			return
		size, limit = int(found.group(1)), int(found.group(2))
		# The broker refuses the first message over its limit, so the oldest unconfirmed one of that size.
		for tag, (index, _address) in self._pending.items():
			if self._sizes[index] == size:
				del self._pending[tag]
				self._results[index] = Delivery(
					False, self._destinations[index], error=_too_large(size, limit)
				)
				return

	def _ensure_exchanges(self, exchanges: Iterable[str], deadline: float) -> dict[str, FabricError]:
		"""Declares (or, with declaring off, checks) each exchange once; returns those refused."""
		refused: dict[str, FabricError] = {}
		for exchange in sorted(set(exchanges) - self._declared):
			reason = self._declare(exchange, not self.declare_exchanges, deadline)
			if reason is None:
				self._declared.add(exchange)
				continue
			refused[exchange] = MessageRejected(
				f"RabbitMQ refused exchange {exchange!r}: {reason}.",
				hint="Create the exchange (or allow declaring exchanges), or fix its type to "
				f"{self.exchange_type!r}; then retry.",
			)
		return refused

	def _declare(self, exchange: str, passive: bool, deadline: float) -> Exception | None:
		"""Declares one durable exchange; returns why the broker refused it, reopening the channel."""
		if exchange == "":
			return None  # the default exchange always exists and cannot be declared
		self._channel_error, done = None, []

		def declared(frame) -> None:
			done.append(frame)
			self._poke()

		self._channel.exchange_declare(
			exchange, self.exchange_type, passive=passive, durable=True, callback=declared
		)
		if not self._wait(lambda: done or self._channel is None or self._failure is not None, deadline):
			raise TransportUnavailable(f"RabbitMQ at {self.where} did not answer an exchange declaration.")
		if self._failure is not None:
			raise self._failure
		if done:
			return None
		reason = self._channel_error
		self._open(deadline)
		return reason

	def _wait(self, done: Callable[[], bool], deadline: float) -> bool:
		"""Runs pika's I/O loop until ``done()`` holds or the deadline passes; returns ``done()``."""
		remaining = deadline - time.monotonic()
		if done() or remaining <= 0 or self._connection is None:
			return done()
		ioloop = self._connection.ioloop
		timer = ioloop.call_later(remaining, ioloop.stop)
		self._until = done
		try:
			ioloop.start()
		finally:
			self._until = None
			ioloop.remove_timeout(timer)
		return done()

	def _poke(self) -> None:
		if self._until is not None and self._until():
			self._connection.ioloop.stop()

	def _disconnect(self) -> None:
		connection, self._connection, self._channel = self._connection, None, None
		self._declared.clear()
		self._next_tag = 0
		if connection is None:
			return
		if connection.is_open:
			connection.close()
			deadline = time.monotonic() + 2
			ioloop = connection.ioloop
			while not connection.is_closed and time.monotonic() < deadline:
				ioloop.call_later(0.05, ioloop.stop)
				ioloop.start()
		connection.ioloop.close()

	# -- administration --------------------------------------------------------------------

	def check(self, timeout: float) -> ConnectionReport:
		"""Connects and reports the server's product and version, the vhost and the exchange."""
		with self._lock:
			deadline = time.monotonic() + timeout
			try:
				self._open(deadline)
				missing = self._declare(self.exchange, True, deadline)
			except FabricError as exc:
				self._disconnect()
				return ConnectionReport(False, str(exc))
			server = self._connection.server_properties or {}
			self._last_used = time.monotonic()
		server_name = f"{_text(server.get('product')) or 'RabbitMQ'} {_text(server.get('version')) or '?'}"
		state = "exists"
		if missing is not None:
			state = "is declared on first publish" if self.declare_exchanges else f"is MISSING ({missing})"
		vhost = self.parameters.virtual_host
		return ConnectionReport(
			missing is None or self.declare_exchanges,
			f"Connected to {server_name} at {self.parameters.host}:{self.parameters.port}, vhost {vhost!r}; "
			f"exchange {self.exchange!r} {state}.",
			(("server", server_name), ("vhost", vhost), ("exchange", f"{self.exchange} {state}")),
		)

	def declare_queue(
		self,
		queue: str,
		binding_keys: Sequence[str] = ("#",),
		*,
		exchange: str | None = None,
		dead_letter: bool = True,
		arguments: dict[str, Any] | None = None,
	) -> QueueTopology:
		"""Declares a durable queue bound to an exchange, with the fabric's dead-letter convention.

		Messages a consumer rejects (or that expire) go to the direct exchange
		``<exchange>.dlx`` with the queue's name as routing key, which routes them to the queue
		``<queue>.dead``; the ``x-death`` header keeps the original routing key and reason.
		"""
		exchange = exchange or self.exchange
		connection = pika.BlockingConnection(connection_parameters(self.url, self.options))
		try:
			channel = connection.channel()
			channel.exchange_declare(exchange, self.exchange_type, durable=True)
			queue_arguments = dict(arguments or {})
			dlx = dlq = None
			if dead_letter:
				dlx, dlq = f"{exchange}.dlx", f"{queue}.dead"
				channel.exchange_declare(dlx, "direct", durable=True)
				channel.queue_declare(dlq, durable=True)
				channel.queue_bind(dlq, dlx, routing_key=queue)
				queue_arguments.update({"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": queue})
			channel.queue_declare(queue, durable=True, arguments=queue_arguments)
			for key in binding_keys:
				channel.queue_bind(queue, exchange, routing_key=key)
		except pika.exceptions.AMQPError as exc:
			raise ConfigurationError(
				f"RabbitMQ refused the queue set-up for {queue!r} on exchange {exchange!r}: {exc!r}.",
				hint="An existing queue or exchange with other settings must be deleted or renamed first.",
			) from exc
		finally:
			if connection.is_open:
				connection.close()
		return QueueTopology(queue, exchange, tuple(binding_keys), dlx, dlq)

	def close(self) -> None:
		"""Closes the publishing connection."""
		with self._lock:
			self._disconnect()


def _connection_error(error: BaseException, where: str, parameters: pika.URLParameters) -> FabricError:
	"""Explains a failed connection; retryable, because events must wait until it is fixed."""
	text = str(error) or repr(error)
	problem, fix = (
		f"No RabbitMQ broker answered at {where}",
		"Check the host, the port and that the broker runs",
	)
	if isinstance(error, pika.exceptions.ProbableAuthenticationError | pika.exceptions.AuthenticationError):
		problem = f"RabbitMQ at {where} refused user {parameters.credentials.username!r}"
		fix = "Check the user name and password in Fabric Settings"
	elif isinstance(error, pika.exceptions.ProbableAccessDeniedError) or "NOT_ALLOWED" in text:
		problem = f"RabbitMQ at {where} refused access to the vhost"
		fix = "Check that the vhost exists and the user has permissions on it"
	return TransportUnavailable(f"{problem} ({text}).", hint=f"{fix}; events wait and are retried.")


def _unencodable(address: AmqpAddress, error: Exception) -> MessageRejected:
	return MessageRejected(
		f"The message for exchange {address.exchange!r} and routing key {address.routing_key[:80]!r} "
		f"cannot be sent over AMQP ({type(error).__name__}: {str(error)[:200]}).",
		hint="Routing keys, message ids and types are at most 255 bytes; shorten the destination "
		"or the event id, then retry.",
	)


def _too_large(size: int, limit: int) -> MessageRejected:
	return MessageRejected(
		f"The message of {size} bytes is larger than RabbitMQ's max message size of {limit} bytes.",
		hint="Make the event smaller (or raise max_message_size on the broker and in the transport "
		"options), then retry.",
	)


def _text(value: Any) -> str:
	return value.decode() if isinstance(value, bytes) else str(value or "")
