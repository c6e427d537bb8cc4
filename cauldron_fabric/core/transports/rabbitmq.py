"""RabbitMQ through pika: durable topic exchanges, persistent messages, publisher confirms.

``amqp://user:password@host:5672/vhost`` (vhost URL-encoded, ``%2F`` for ``/``; pika's query
parameters such as ``heartbeat`` work too). Options: ``exchange`` (for destinations without
one, default ``cauldron.events``), ``exchange_type`` (of exchanges declared on first use,
default ``topic``), ``declare_exchanges`` (default on; off: exchanges must exist), ``mandatory``
(refuse messages no queue is bound for, default on), ``cloudevents_binding`` (``amqp``:
``cloudEvents_`` headers, the default; ``rabbitmq``: ``ce-``), ``connection_timeout`` (seconds,
default 5), ``max_message_size`` (bytes, the broker's ``max_message_size``, default 128 MiB:
larger bodies are refused for good without being sent) and ``app_id``.

How destinations, headers and the message key map onto AMQP is in amqp. RabbitMQ has no
partitions: a Delivery reports partition 0 and, as offset, the message's publisher-confirm
sequence number on its channel.

Publishing drives pika's SelectConnection synchronously: a batch is written in one go and the
broker's cumulative confirms are collected after it, instead of one round trip (and, for a
durable queue, one disk sync) per message as with BlockingConnection's ``confirm_delivery``;
``tests/benchmarks/bench_rabbitmq.py`` measures the difference.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import SelectConnection

from cauldron_fabric.core.errors import (
	BrokerUnreachable,
	ConfigurationError,
	FabricError,
	MessageRejected,
	TransportUnavailable,
)
from cauldron_fabric.core.ports import ConnectionReport, Delivery, OutboundMessage, Transport
from cauldron_fabric.core.transports.amqp import (
	BINDING_PREFIXES,
	DEFAULT_EXCHANGE,
	MAX_MESSAGE_SIZE,
	MAX_NAME_BYTES,
	UNENCODABLE,
	AmqpAddress,
	ConfirmBatch,
	QueueTopology,
	amqp_properties,
	connection_error,
	connection_parameters,
	connection_report,
	declare_queue,
	parse_destination,
	too_large,
	unencodable,
	unencodable_name,
)

# Seconds of idleness after which the connection is rebuilt before use: between publishes no
# loop answers the broker's heartbeats, so it may have dropped us meanwhile.
IDLE_RECONNECT = 20.0


class RabbitMQTransport(Transport):
	"""Publishes to exchanges over one confirming channel; reconnects after any failure."""

	scheme = "amqp"

	def __init__(self, url: str, options: dict[str, Any] | None = None):
		self.options = dict(options or {})
		self.url = url
		self.parameters = connection_parameters(url, self.options)
		self.where = f"{self.parameters.host}:{self.parameters.port} (vhost {self.parameters.virtual_host!r})"
		self.exchange = self.options.get("exchange") or DEFAULT_EXCHANGE
		if len(self.exchange.encode("utf-8", "replace")) > MAX_NAME_BYTES:
			# pika raised ShortStringTooLong out of every publish and check: the relay stopped.
			raise ConfigurationError(
				f"The RabbitMQ exchange {self.exchange[:60]!r}… cannot be used: "
				f"{unencodable_name(self.exchange, ValueError())}.",
				hint="Shorten the exchange name in Fabric Settings.",
			)
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
		self._batch: ConfirmBatch | None = None
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
			batch = self._batch = ConfirmBatch(messages)
			try:
				for index, (message, address) in enumerate(zip(messages, addresses, strict=True)):
					if address.exchange in refused:
						batch.fail(index, refused[address.exchange])
						continue
					if len(message.body) > self.max_message_size:
						# The broker would close the channel and lose the rest of the batch with it.
						batch.fail(index, too_large(len(message.body), self.max_message_size))
						continue
					try:
						properties = amqp_properties(message, self.prefix, self.app_id)
						# pika encodes the whole message before writing any of it: a refusal here
						# sent nothing and used no sequence number on the channel.
						self._channel.basic_publish(
							address.exchange, address.routing_key, message.body, properties, self.mandatory
						)
					except UNENCODABLE as exc:
						batch.fail(index, unencodable(address, exc))
						continue
					self._next_tag += 1
					batch.sent(index, self._next_tag, address, properties.message_id)
				self._wait(lambda: not batch.pending or self._failure is not None, deadline)
			except BaseException:
				# Confirms of what went out are unaccounted for: start the next batch on a fresh channel.
				self._disconnect()
				raise
			finally:
				self._batch = None
			unconfirmed = self._failure or TransportUnavailable(
				f"RabbitMQ at {self.where} did not confirm the message in time.",
				hint="The event is retried; check the broker's load and alarms (memory, disk).",
			)
			if batch.pending:
				# The channel's sequence numbers are unknown after a timeout: start over on a fresh one.
				self._disconnect()
			self._last_used = time.monotonic()
			return batch.deliveries(unconfirmed)

	def _on_confirm(self, frame) -> None:
		if self._batch is not None:
			acked = isinstance(frame.method, pika.spec.Basic.Ack)
			self._batch.confirm(frame.method.delivery_tag, frame.method.multiple, acked)
		self._poke()

	def _on_return(self, channel, method, properties, body) -> None:
		if self._batch is not None:
			reason = f"{method.reply_code} {method.reply_text}"
			self._batch.returned(
				AmqpAddress(method.exchange, method.routing_key), properties.message_id, reason
			)

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
			self._failure = self._failure or BrokerUnreachable(
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
		self._failure = connection_error(error, self.where, self.parameters)
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
			if self._batch is not None and self._batch.pending:
				self._batch.refuse_too_large(str(reason))
				self._failure = TransportUnavailable(
					f"RabbitMQ closed the publishing channel: {reason}.", hint="The events are retried."
				)
		self._poke()

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

		try:
			self._channel.exchange_declare(
				exchange, self.exchange_type, passive=passive, durable=True, callback=declared
			)
		except UNENCODABLE as exc:
			# Refused before anything was written (a name over 255 bytes): the channel is fine.
			return ValueError(unencodable_name(exchange, exc))
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
		return connection_report(server, self.parameters, self.exchange, missing, self.declare_exchanges)

	def declare_queue(
		self,
		queue: str,
		binding_keys: Sequence[str] = ("#",),
		*,
		exchange: str | None = None,
		dead_letter: bool = True,
		arguments: dict[str, Any] | None = None,
	) -> QueueTopology:
		"""Declares a durable queue bound to ``exchange`` (the transport's by default); see amqp.declare_queue."""
		return declare_queue(
			connection_parameters(self.url, self.options),
			queue,
			binding_keys,
			exchange or self.exchange,
			self.exchange_type,
			dead_letter=dead_letter,
			arguments=arguments,
		)

	def close(self) -> None:
		"""Closes the publishing connection."""
		with self._lock:
			self._disconnect()
