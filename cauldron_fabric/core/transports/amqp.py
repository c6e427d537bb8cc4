"""AMQP as the RabbitMQ transport speaks it, apart from any connection.

Connection parameters come from ``amqp://user:password@host:5672/vhost`` (see
connection_parameters). Destinations are ``exchange/routing.key``; without ``/`` the
destination is a routing key on the ``exchange`` option's exchange, and ``/queue`` goes through
the default exchange straight to a queue. ``ce_*``, ``ce-*`` and ``cloudEvents_*`` headers
become the binding's application headers, ``content-type`` the ``content_type`` property, and
the message key the CloudEvents partitioning extension ``partitionkey`` (a consistent-hash
exchange with ``hash-header`` keeps each entity in order).

Queues the fabric sets up follow one dead-letter convention (see declare_queue). The errors
here say what the broker refused, or why it could not be reached, and what to do about it.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from cauldron_fabric.core.errors import (
	BrokerUnreachable,
	ConfigurationError,
	FabricError,
	MessageRejected,
	RetryableError,
)
from cauldron_fabric.core.ports import ConnectionReport, Delivery, OutboundMessage
from cauldron_fabric.core.urls import redact_text, redact_url

DEFAULT_EXCHANGE = "cauldron.events"
BINDING_PREFIXES = {"amqp": "cloudEvents_", "rabbitmq": "ce-"}
CLOUDEVENTS_PREFIXES = ("ce_", "ce-", "cloudevents_", "cloudevents:")
PERSISTENT = 2
# RabbitMQ's default max_message_size; a larger body makes the broker close the channel.
MAX_MESSAGE_SIZE = 128 * 1024 * 1024
# AMQP's short strings (exchange names, routing keys, message ids) hold at most this many bytes.
MAX_NAME_BYTES = 255
TOO_LARGE = re.compile(r"message size (\d+) is larger than configured max size (\d+)")
# What pika raises for a message AMQP cannot carry (a routing key, message id or type over 255
# bytes, a header value of no AMQP type), before anything is written.
UNENCODABLE = (
	pika.exceptions.ShortStringTooLong,
	pika.exceptions.UnsupportedAMQPFieldException,
	TypeError,
	ValueError,
)


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


def declare_queue(
	parameters: pika.URLParameters,
	queue: str,
	binding_keys: Sequence[str],
	exchange: str,
	exchange_type: str,
	*,
	dead_letter: bool = True,
	arguments: dict[str, Any] | None = None,
) -> QueueTopology:
	"""Declares a durable queue bound to an exchange, with the fabric's dead-letter convention.

	Messages a consumer rejects (or that expire) go to the direct exchange
	``<exchange>.dlx`` with the queue's name as routing key, which routes them to the queue
	``<queue>.dead``; the ``x-death`` header keeps the original routing key and reason.
	"""
	connection = pika.BlockingConnection(parameters)
	try:
		channel = connection.channel()
		channel.exchange_declare(exchange, exchange_type, durable=True)
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


def connection_error(error: BaseException, where: str, parameters: pika.URLParameters) -> BrokerUnreachable:
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
	return BrokerUnreachable(f"{problem} ({text}).", hint=f"{fix}; events wait and are retried.")


def unencodable(address: AmqpAddress, error: Exception) -> MessageRejected:
	"""Explains a message pika could not encode (see UNENCODABLE); permanent, nothing was sent."""
	return MessageRejected(
		f"The message for exchange {address.exchange!r} and routing key {address.routing_key[:80]!r} "
		f"cannot be sent over AMQP ({type(error).__name__}: {str(error)[:200]}).",
		hint="Routing keys, message ids and types are at most 255 bytes; shorten the destination "
		"or the event id, then retry.",
	)


def unencodable_name(name: str, error: Exception) -> str:
	"""Says why pika could not write an exchange name (see UNENCODABLE), without quoting all of it."""
	size = len(name.encode("utf-8", "replace"))
	if size > MAX_NAME_BYTES:
		return f"its name is {size} bytes long and AMQP allows at most {MAX_NAME_BYTES}"
	return f"its name cannot be sent over AMQP ({type(error).__name__}: {str(error)[:200]})"


def too_large(size: int, limit: int) -> MessageRejected:
	"""Explains a message over the broker's max message size; permanent, retrying cannot help."""
	return MessageRejected(
		f"The message of {size} bytes is larger than RabbitMQ's max message size of {limit} bytes.",
		hint="Make the event smaller (or raise max_message_size on the broker and in the transport "
		"options), then retry.",
	)


class ConfirmBatch:
	"""One publish call's messages between basic_publish and the broker's confirms.

	``pending`` maps each sent message's tag (its publisher-confirm sequence number on the
	channel, in publishing order) to its index and address; a message refused before sending
	gets its Delivery at once.
	"""

	def __init__(self, messages: Sequence[OutboundMessage]):
		self.destinations = [m.destination for m in messages]
		self.sizes = [len(m.body) for m in messages]
		self.results: list[Delivery | None] = [None] * len(messages)
		self.message_ids: list[str | None] = [None] * len(messages)
		self.pending: dict[int, tuple[int, AmqpAddress]] = {}
		self.returns: dict[int, str] = {}

	def fail(self, index: int, error: FabricError) -> None:
		"""Gives message ``index`` its failed Delivery."""
		self.results[index] = Delivery(False, self.destinations[index], error=error)

	def sent(self, index: int, tag: int, address: AmqpAddress, message_id: str | None) -> None:
		"""Notes that message ``index`` went out under confirm sequence number ``tag``."""
		self.message_ids[index] = message_id
		self.pending[tag] = (index, address)

	def confirm(self, tag: int, multiple: bool, acked: bool) -> None:
		"""Settles what an ack or nack covers: ``tag``, and with ``multiple`` every tag before it."""
		settled = [tag]
		if multiple:
			# Pending tags are in publishing order, so the confirmed ones are a prefix.
			settled = list(itertools.takewhile(lambda pending: pending <= tag, self.pending))
		for confirmed in settled:
			index, address = self.pending.pop(confirmed, (None, None))
			if index is not None:
				self.results[index] = self._confirmed(index, address, confirmed, acked)

	def _confirmed(self, index: int, address: AmqpAddress, tag: int, acked: bool) -> Delivery:
		destination = self.destinations[index]
		if not acked:
			error = BrokerNack(
				f"RabbitMQ refused the message for exchange {address.exchange!r} (negative confirm).",
				hint="A queue may be full with overflow=reject-publish; the event is retried.",
			)
			return Delivery(False, destination, error=error)
		if index in self.returns:
			error = MessageUnroutable(
				f"No queue is bound to exchange {address.exchange!r} for routing key "
				f"{address.routing_key!r} ({self.returns[index]}).",
				hint="Bind a queue for it (or turn 'mandatory' off to let such messages drop), then retry.",
			)
			return Delivery(False, destination, error=error)
		return Delivery(True, destination, partition=0, offset=tag)

	def returned(self, address: AmqpAddress, message_id: str | None, reason: str) -> None:
		"""Notes a message the broker returned as unroutable; its confirm follows."""
		# A return precedes the confirm of the same message, and returns come in publishing
		# order, so it belongs to the oldest unconfirmed, unreturned message with its address
		# and message id: where headers route (a headers exchange), a message to the same
		# address may have been routed before it and still wait for its confirm.
		for index, pending_address in self.pending.values():
			if (
				pending_address == address
				and self.message_ids[index] == message_id
				and index not in self.returns
			):
				self.returns[index] = reason
				return

	def refuse_too_large(self, reason: str) -> None:
		"""Fails for good the unconfirmed message whose size made the broker close the channel."""
		found = TOO_LARGE.search(reason)
		if found is None:
			return
		size, limit = int(found.group(1)), int(found.group(2))
		# The broker refuses the first message over its limit, so the oldest unconfirmed one of that size.
		for tag, (index, _address) in self.pending.items():
			if self.sizes[index] == size:
				del self.pending[tag]
				self.fail(index, too_large(size, limit))
				return

	def deliveries(self, unconfirmed: FabricError) -> list[Delivery]:
		"""Returns every message's Delivery, ``unconfirmed`` for those still without a confirm."""
		return [
			r or Delivery(False, d, error=unconfirmed)
			for r, d in zip(self.results, self.destinations, strict=True)
		]


def connection_report(
	server: dict, parameters: pika.URLParameters, exchange: str, missing: Exception | None, declares: bool
) -> ConnectionReport:
	"""Reports a checked connection: the server's product and version, the vhost and whether
	``exchange`` exists (``missing`` says why not; ``declares``: it is declared on first use)."""
	server_name = f"{_text(server.get('product')) or 'RabbitMQ'} {_text(server.get('version')) or '?'}"
	state = "exists"
	if missing is not None:
		state = "is declared on first publish" if declares else f"is MISSING ({missing})"
	vhost = parameters.virtual_host
	return ConnectionReport(
		missing is None or declares,
		f"Connected to {server_name} at {parameters.host}:{parameters.port}, vhost {vhost!r}; "
		f"exchange {exchange!r} {state}.",
		(("server", server_name), ("vhost", vhost), ("exchange", f"{exchange} {state}")),
	)


def _text(value: Any) -> str:
	return value.decode() if isinstance(value, bytes) else str(value or "")
