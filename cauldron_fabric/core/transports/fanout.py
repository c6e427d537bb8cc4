"""Publishing each message to several brokers, or to a broker under a derived destination.

``FanoutTransport`` sends every message through each of its legs (Kafka and RabbitMQ, when a
site has both) and reports a message published only when every leg acknowledged it; a failed
leg makes the relay retry the message, so a broker that is down delays events and loses none
(the other broker may then see a message twice, as at-least-once delivery allows).
``RoutedTransport`` rewrites each message's destination first: the relay names Kafka topics,
while a RabbitMQ topic exchange routes by event type (``route_by_event_type``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cauldron_fabric.core.ports import ConnectionReport, Delivery, OutboundMessage, Transport

TYPE_HEADERS = ("ce_type", "ce-type", "cloudEvents_type")


def route_by_event_type(exchange: str) -> Callable[[OutboundMessage], str]:
	"""Returns a router sending each message to ``exchange`` with its event type as routing key."""

	def route(message: OutboundMessage) -> str:
		event_type = next((value for name, value in message.headers if name in TYPE_HEADERS), None)
		return f"{exchange}/{event_type or message.destination}"

	return route


class RoutedTransport(Transport):
	"""A transport whose messages go where ``route(message)`` says instead of their destination."""

	def __init__(self, transport: Transport, route: Callable[[OutboundMessage], str]):
		self.transport, self.route = transport, route
		self.scheme = transport.scheme

	def _routed(self, messages: Sequence[OutboundMessage]) -> list[OutboundMessage]:
		return [OutboundMessage(self.route(m), m.key, m.body, m.headers) for m in messages]

	def publish(self, messages: Sequence[OutboundMessage], timeout: float) -> list[Delivery]:
		"""Publishes the messages under their routed destinations."""
		return self.transport.publish(self._routed(messages), timeout)

	def publish_async(self, messages: Sequence[OutboundMessage]) -> Callable[[float], list[Delivery]]:
		"""Starts publishing the routed messages."""
		return self.transport.publish_async(self._routed(messages))

	def check(self, timeout: float) -> ConnectionReport:
		"""Checks the wrapped transport."""
		return self.transport.check(timeout)

	def close(self) -> None:
		"""Closes the wrapped transport."""
		self.transport.close()


class FanoutTransport(Transport):
	"""Publishes every message through each leg; a message counts only when all legs took it."""

	def __init__(self, legs: Sequence[Transport]):
		if not legs:
			raise ValueError("FanoutTransport needs at least one transport")
		self.legs = list(legs)
		self.scheme = "+".join(leg.scheme for leg in self.legs)

	def publish(self, messages: Sequence[OutboundMessage], timeout: float) -> list[Delivery]:
		"""Publishes through every leg and combines the outcomes per message."""
		return self.publish_async(messages)(timeout)

	def publish_async(self, messages: Sequence[OutboundMessage]) -> Callable[[float], list[Delivery]]:
		"""Starts every leg's publish (so the brokers work at once); the waiter combines them."""
		waits = [leg.publish_async(messages) for leg in self.legs]

		def wait(timeout: float) -> list[Delivery]:
			outcomes = [w(timeout) for w in waits]
			return [_combine(per_leg) for per_leg in zip(*outcomes, strict=True)]

		return wait

	def check(self, timeout: float) -> ConnectionReport:
		"""Checks every leg; fine only when all are."""
		reports = [leg.check(timeout) for leg in self.legs]
		details = tuple(item for report in reports for item in report.details)
		return ConnectionReport(all(r.ok for r in reports), " ".join(r.summary for r in reports), details)

	def close(self) -> None:
		"""Closes every leg."""
		for leg in self.legs:
			leg.close()


def _combine(deliveries: Sequence[Delivery]) -> Delivery:
	"""Returns the first leg's delivery when every leg succeeded, else the first failure."""
	failed = [d for d in deliveries if not d.ok]
	if not failed:
		return deliveries[0]
	retryable = [d for d in failed if d.retryable]
	# A retryable failure wins: retrying may fix it, and the permanent one is retried with it.
	return retryable[0] if retryable else failed[0]
