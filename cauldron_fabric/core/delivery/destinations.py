"""Destinations: where a subscription sends its events, chosen by the scheme of its address.

==================================  ===========================================================
address                             destination
==================================  ===========================================================
``https://host/path`` (``http:``)   a webhook (method, headers, timeout, secret from the
                                    subscription); receivers on private addresses need the
                                    allow-list
``kafka:topic.name``                a Kafka topic, through the Kafka transport of Fabric Settings
``amqp:exchange/routing.key``       a RabbitMQ exchange and routing key (``amqp:routing.key``
                                    uses the transport's default exchange; ``{type}`` in the
                                    key stands for the event type: ``amqp:events/{type}``)
``handler:app.module.function``     an in-app handler another app registered in its hooks; it is
                                    called as ``function(envelope, payload)``
==================================  ===========================================================

Broker credentials never appear in an address: the transports come from Fabric Settings.
"""

from __future__ import annotations

import abc
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cauldron_fabric.core.cloudevents import ATTRIBUTE_NAMES, HTTP_PREFIX, KAFKA_PREFIX
from cauldron_fabric.core.delivery.records import Outcome
from cauldron_fabric.core.delivery.transform import ENVELOPE, REQUIRED_ATTRIBUTES, STRUCTURED, RenderedPayload
from cauldron_fabric.core.delivery.webhook import WebhookSender, WebhookTarget
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import ConfigurationError, FabricError, RetryableError
from cauldron_fabric.core.naming import TOPIC_NAME, TOPIC_NAME_RULE
from cauldron_fabric.core.ports import OutboundMessage, Transport

KINDS = {"http": "webhook", "https": "webhook", "kafka": "kafka", "amqp": "amqp", "handler": "handler"}
TARGET_RULES = {
	"kafka": (TOPIC_NAME, f"a topic name: {TOPIC_NAME_RULE}"),
	"amqp": (re.compile(r"^[^\s/]*(/\S*)?\Z"), "exchange/routing.key"),
	"handler": (
		re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z"),
		"a dotted path app.module.function",
	),
}
Handler = Callable[[Envelope, RenderedPayload], Any]
TYPE_PLACEHOLDER = "{type}"


class DestinationUnavailable(RetryableError):
	"""A destination that cannot be used yet (no broker configured, handler app not installed)."""


@dataclass(frozen=True, slots=True)
class DestinationAddress:
	"""A parsed destination address: its kind and its target (URL, topic, exchange/key, path)."""

	kind: str
	target: str


def parse_address(address: str) -> DestinationAddress:
	"""Parses and checks an address; raises ConfigurationError explaining the accepted forms."""
	text = (address or "").strip()
	try:
		scheme = urlsplit(text).scheme.lower() if ":" in text else ""
	except ValueError as exc:  # brackets around no IPv6 address: "https://[::1/hook"
		raise ConfigurationError(
			f"Destination {address!r} is not a well-formed URL ({exc}).",
			hint="Write an IPv6 host in brackets, e.g. https://[2001:db8::1]/hook, or use a host name.",
		) from exc
	kind = KINDS.get(scheme)
	if kind is None:
		raise ConfigurationError(
			f"Destination {address!r} has no known kind.",
			hint="Use https://… for a webhook, kafka:topic, amqp:exchange/routing.key or handler:app.module.function.",
		)
	if kind == "webhook":
		return DestinationAddress(kind, text)
	target = text.split(":", 1)[1]
	pattern, form = TARGET_RULES[kind]
	if target.startswith("//") or not target or not pattern.match(target):
		raise ConfigurationError(
			f"Destination {address!r}: after '{scheme}:' write {form}.",
			hint="Broker connections and credentials come from Fabric Settings, not from the address.",
		)
	return DestinationAddress(kind, target)


# An event, its payload rendered for one subscription, and that delivery's id (records.delivery_id).
Item = tuple[Envelope, RenderedPayload, str]


class Destination(abc.ABC):
	"""Sends rendered events to one place and reports an Outcome per event.

	One destination may serve several subscriptions with the same address and settings, so each
	call names the delivery it makes.
	"""

	batches: bool = False
	timed: bool = True  # its attempts end by a timeout of their own (see overdue.py)

	@abc.abstractmethod
	def deliver(self, envelope: Envelope, payload: RenderedPayload, delivery_id: str) -> Outcome:
		"""Makes one attempt for one event; never raises for the destination's own failure."""

	def deliver_many(self, items: Sequence[Item]) -> list[Outcome]:
		"""Makes one attempt for each event, in order; brokers override this to publish in one batch."""
		return [self.deliver(*item) for item in items]


class WebhookDestination(Destination):
	"""A signed HTTP call per event; the delivery id is the webhook id, the event id is ``ce-id``."""

	def __init__(self, sender: WebhookSender, target: WebhookTarget):
		self.sender, self.target = sender, target

	def deliver(self, envelope: Envelope, payload: RenderedPayload, delivery_id: str) -> Outcome:
		"""Calls the receiver once with the payload, its ``ce-`` headers and the signature."""
		headers = [h for h in payload.headers(HTTP_PREFIX, compact=True) if h[0] != "content-type"]
		return self.sender.send(self.target, delivery_id, payload.body, payload.content_type, headers)


def header_set_by_the_sender(name: str, form: str) -> str | None:
	"""Returns what the webhook sender writes as header ``name`` for payload ``form``, or None.

	``content-type`` (the payload's), or the CloudEvents attribute it writes as that ``ce-``
	header: a header row of that name would be overridden. WebhookTarget refuses the
	Standard Webhooks headers, Host and Content-Length whatever the form.
	"""
	lowered = name.strip().lower()
	if lowered == "content-type":
		return lowered
	if not lowered.startswith(HTTP_PREFIX):
		return None
	# The envelope's body carries every attribute, so its request has the required ones only.
	written = () if form == STRUCTURED else REQUIRED_ATTRIBUTES if form == ENVELOPE else ATTRIBUTE_NAMES
	attribute = lowered.removeprefix(HTTP_PREFIX)
	return attribute if attribute in written else None


def overridden_header_problems(headers: Sequence[tuple[str, str]], form: str) -> list[str]:
	"""Returns why each header row names a header the sender writes itself for payload ``form``.

	Refused when saving and when loading for delivery alike: the sender's value replaces the
	row's, and where an event lacks an optional attribute (no causation id, no checked schema)
	the sender writes no such header and the row's value reached the receiver as that event's
	CloudEvents attribute.
	"""
	problems = []
	for name, _value in headers:
		written = header_set_by_the_sender(name, form)
		if written == "content-type":
			problems.append(
				f"Header {name!r}: the content type follows the payload form (application/json for the "
				"envelope and a field selection, that of the event data for a binary CloudEvent, "
				"application/cloudevents+json for a structured one) and would replace this row. Remove the "
				"row; to send another content type, choose the Jinja template payload and set its Content type."
			)
		elif written:
			problems.append(
				f"Header {name!r}: with the {form} payload, {name.strip().lower()} carries the CloudEvents "
				f"attribute {written} of the event, which would replace this row (or stand in for it in an "
				"event without one). Remove the row, or give your value a header name without the ce- prefix."
			)
	return problems


class TransportDestination(Destination):
	"""A topic or exchange of a Transport; a batch is one publish call with one wait for acks."""

	batches = True

	def __init__(self, transport: Transport, destination: str, timeout: float = 15.0):
		self.transport, self.destination, self.timeout = transport, destination, timeout

	def deliver(self, envelope: Envelope, payload: RenderedPayload, delivery_id: str) -> Outcome:
		"""Publishes one event."""
		return self.deliver_many([(envelope, payload, delivery_id)])[0]

	def deliver_many(self, items: Sequence[Item]) -> list[Outcome]:
		"""Publishes every event keyed by its entity (so one entity stays in order) and waits for acks."""
		templated = TYPE_PLACEHOLDER in self.destination
		messages = [
			OutboundMessage(
				self.destination.replace(TYPE_PLACEHOLDER, envelope.type) if templated else self.destination,
				envelope.partition_key,
				payload.body,
				payload.headers(KAFKA_PREFIX),
			)
			for envelope, payload, _ in items
		]
		started = time.perf_counter()
		deliveries = self.transport.publish(messages, self.timeout)
		latency = (time.perf_counter() - started) * 1000
		return [
			Outcome(True, latency_ms=latency)
			if d.ok
			else Outcome(False, d.retryable, str(d.error), latency_ms=latency)
			for d in deliveries
		]


class HandlerDestination(Destination):
	"""An in-process function; its FabricErrors say whether to retry, any other error is retried.

	It has no timeout: the engine logs a call running past its overdue_after (overdue.py).
	"""

	timed = False

	def __init__(self, path: str, handler: Handler):
		self.path, self.handler = path, handler

	def deliver(self, envelope: Envelope, payload: RenderedPayload, delivery_id: str) -> Outcome:
		"""Calls the handler once."""
		try:
			self.handler(envelope, payload)
		except FabricError as exc:
			return Outcome(False, exc.retryable, f"Handler {self.path} failed: {exc}")
		except (Exception, SystemExit) as exc:
			# sys.exit() on a sending thread escaped the engine with the rest of the batch sent but
			# released unsettled, and stopped the worker: the next one sent the batch again.
			return Outcome(False, True, f"Handler {self.path} raised {type(exc).__name__}: {exc}")
		return Outcome(True)


class Destinations:
	"""Opens (and caches) the destination of each subscription address.

	``transports`` maps ``kafka``/``amqp`` to the transports built from Fabric Settings;
	``handlers`` maps registered dotted paths to functions (the Frappe layer fills it from the
	apps' hooks, so only registered functions can be called).
	"""

	def __init__(
		self,
		*,
		transports: Mapping[str, Transport] | None = None,
		handlers: Mapping[str, Handler] | None = None,
		sender: WebhookSender | None = None,
		publish_timeout: float = 15.0,
	):
		self.transports = dict(transports or {})
		self.handlers = dict(handlers or {})
		self.sender = sender or WebhookSender()
		self.publish_timeout = publish_timeout
		self._cache: dict[tuple, Destination] = {}
		self._lock = threading.Lock()
		self._builders = {
			"webhook": self._webhook,
			"kafka": self._transport,
			"amqp": self._transport,
			"handler": self._handler,
		}

	def open(self, address: str, webhook: WebhookTarget | None = None) -> Destination:
		"""Returns the destination for an address; raises FabricError when it cannot be used."""
		key = (address, webhook)
		with self._lock:
			cached = self._cache.get(key)
		if cached is not None:
			return cached
		parsed = parse_address(address)
		destination = self._builders[parsed.kind](parsed, webhook)
		with self._lock:
			self._cache[key] = destination
		return destination

	def _webhook(self, address: DestinationAddress, webhook: WebhookTarget | None) -> Destination:
		return WebhookDestination(self.sender, webhook or WebhookTarget(address.target))

	def _transport(self, address: DestinationAddress, webhook: WebhookTarget | None) -> Destination:
		transport = self.transports.get(address.kind)
		if transport is None:
			broker = {"kafka": "Kafka", "amqp": "RabbitMQ"}[address.kind]
			raise DestinationUnavailable(
				f"No {broker} connection is configured for destination {address.kind}:{address.target}.",
				hint=f"Set the {broker} connection in Fabric Settings; the deliveries wait and are retried.",
			)
		return TransportDestination(transport, address.target, self.publish_timeout)

	def _handler(self, address: DestinationAddress, webhook: WebhookTarget | None) -> Destination:
		handler = self.handlers.get(address.target)
		if handler is None:
			raise DestinationUnavailable(
				f"No handler {address.target!r} is registered.",
				hint="The app that provides it must list it in its hooks and be installed; deliveries are retried.",
			)
		return HandlerDestination(address.target, handler)

	def close(self) -> None:
		"""Closes the webhook sender (transports belong to whoever built them)."""
		self.sender.close()
