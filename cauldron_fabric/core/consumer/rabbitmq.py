"""RabbitMQ as a message source: a group's durable queue bound to the topic exchange, manual acks.

The queue is named after the consumer group; every process consuming it is a competing
consumer, so a group scales out by process as on Kafka. Binding keys are AMQP patterns of event
types (``agent.approval.*``, ``agent.#``). Messages are acknowledged only once their effect is
committed; a crash leaves them unacknowledged and the broker hands them out again.

Delayed redelivery without blocking the queue: a failed message is republished to a delay queue
``<queue>.retry.<ms>ms`` whose message TTL dead-letters it back into the group's queue when due.
Dead letters go to ``<queue>.dead`` with the origin headers. (The queues are named and declared
in ``rabbitmq_queues.py``.)

A request expires in the group's queue when no member took it within its timeout (its message
TTL); the broker then dead-letters it into ``<queue>.expired``, which every member drains: it
counts and logs each such request and drops it, as its requester has already given up and
serving it late is what the TTL prevents.

Retry copies, dead letters and replies are published with publisher confirms, each within
``confirm_timeout`` seconds, and replies only to addresses the options allow (see
``rabbitmq_publishing.py``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import pika
import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from cauldron_fabric.core.consumer.messages import (
	REPLY_TO,
	Failure,
	InboundMessage,
	PartitionLag,
	forwarded_headers,
	text,
)
from cauldron_fabric.core.consumer.ports import MessageSource
from cauldron_fabric.core.consumer.rabbitmq_messages import inbound_message
from cauldron_fabric.core.consumer.rabbitmq_publishing import (
	CONFIRM_TIMEOUT,
	DIRECT_REPLY_TO,
	copy_properties,
	publish_within_timeout,
	reply_is_mandatory,
	reply_properties,
)
from cauldron_fabric.core.consumer.rabbitmq_queues import (
	amqp_binding_key,
	dead_letter_queue,
	declare_group_queues,
	expired_queue,
	group_depths,
	retry_queue,
)
from cauldron_fabric.core.consumer.reply_addresses import ReplyAddressPolicy, reply_address_patterns
from cauldron_fabric.core.delivery.matching import compile_pattern
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import ConfigurationError, TransportUnavailable
from cauldron_fabric.core.transports.amqp import DEFAULT_EXCHANGE, connection_parameters

log = logging.getLogger("cauldron_fabric.consumer.rabbitmq")

PRECONDITION_FAILED = 406  # AMQP: a queue or exchange declared again with other arguments or type
# A broker that takes the TCP connection and never answers the AMQP handshake makes pika's
# BlockingConnection raise its connection workflow's own error (a stack timeout), no AMQPError:
# it went through the reconnect in poll() and stopped the consumer with a traceback.
AMQP_ERRORS = (pika.exceptions.AMQPError, AMQPConnectorException, OSError)


def close_quietly(connection) -> None:
	"""Closes a connection if it is open; one that fails to close is gone anyway."""
	if connection is not None and connection.is_open:
		try:
			connection.close()
		except AMQP_ERRORS:
			pass


class RabbitMQSource(MessageSource):
	"""One competing consumer on a group's queue; reconnects after any connection loss."""

	broker = "amqp"

	def __init__(
		self,
		url: str,
		group: str,
		binding_keys: Sequence[str],
		*,
		retry_delays: Sequence[float] = (1.0, 4.0, 16.0, 64.0),
		lag_delays: Sequence[float] = (),
		options: dict[str, Any] | None = None,
	):
		if not group or not binding_keys:
			raise ConfigurationError(
				"A RabbitMQ consumer needs a group (its queue) and binding keys.",
				hint="Pass --group and --topics with event type patterns such as agent.approval.*.",
			)
		self.options = dict(options or {})
		self.url, self.group, self.queue = url, group, group
		self.exchange = self.options.get("exchange") or DEFAULT_EXCHANGE
		for key in binding_keys:
			# A Kafka regex or a word with spaces bound the queue to keys no event type has: the
			# consumer ran, consuming nothing. AMQP's '#' is taken as the patterns' '**'.
			compile_pattern(".".join("**" if word == "#" else word for word in key.strip().split(".")))
		self.binding_keys = [amqp_binding_key(k) for k in binding_keys]
		self.retry_delays = list(retry_delays) or [1.0]
		# Delays of other attempts settings: their queues, if declared, may still hold retries.
		self.lag_delays = sorted(set(lag_delays) - set(self.retry_delays))
		self.prefetch = int(self.options.get("prefetch") or 50)
		self.confirm_timeout = float(self.options.get("confirm_timeout") or CONFIRM_TIMEOUT)
		self.reply_addresses = ReplyAddressPolicy(
			"RabbitMQ queue",
			own=(DIRECT_REPLY_TO,),
			own_prefixes=(DIRECT_REPLY_TO + ".",),
			patterns=reply_address_patterns(self.options.get("allowed_reply_addresses")),
		)
		self.parameters = connection_parameters(url, self.options)
		self._connection = None
		self._channel = None
		self._generation = 0
		self._cancelled = False
		self._buffer: deque[InboundMessage] = deque()
		self._deferred: list[tuple[float, InboundMessage]] = []
		# Delivery tags not acknowledged yet, per queue: the broker counts them as no queue's
		# ready messages, and without the management plugin tells nobody else of them.
		self._unacked: dict[str, set[int]] = {}
		self._connect()

	# -- connection -------------------------------------------------------------------------

	def _connect(self) -> None:
		connection = None
		try:
			connection = pika.BlockingConnection(self.parameters)
			channel = connection.channel()
			channel.confirm_delivery()
			declare_group_queues(channel, self.queue, self.exchange, self.binding_keys, self.retry_delays)
			channel.basic_qos(prefetch_count=self.prefetch)
			channel.add_on_cancel_callback(self._on_cancelled)
			channel.basic_consume(self.queue, self._on_message, auto_ack=False)
			channel.basic_consume(expired_queue(self.queue), self._on_expired, auto_ack=False)
		except AMQP_ERRORS as exc:
			close_quietly(connection)
			if (
				isinstance(exc, pika.exceptions.ChannelClosedByBroker)
				and exc.reply_code == PRECONDITION_FAILED
			):
				# Declared before with other arguments (the dead-letter exchange follows the
				# exchange setting): refused the same way at every try, so it is no outage.
				raise ConfigurationError(
					f"RabbitMQ refused the queues of group {self.queue!r} as the consumer declares them:"
					f" {exc.reply_text}.",
					hint="They exist with other arguments (declared for another exchange, or by hand): set"
					" the exchange back, delete the group's queues once drained, or consume as another group.",
				) from exc
			raise TransportUnavailable(
				f"Cannot consume queue {self.queue!r} at {self.parameters.host}:{self.parameters.port}: {exc!r}.",
				hint="Check that RabbitMQ runs and the user may declare queues; the consumer keeps trying.",
			) from exc
		self._connection, self._channel, self._cancelled = connection, channel, False
		self._generation += 1
		self._unacked = {}

	def _on_cancelled(self, _frame) -> None:
		# The broker ends the consumer when its queue is deleted (or its node fails): without
		# reconnecting, which declares the queue again, nothing would ever arrive again.
		self._cancelled = True

	def _drop(self, error: BaseException) -> None:
		log.warning("lost the RabbitMQ connection, reconnecting: %r", error)
		connection, self._connection, self._channel = self._connection, None, None
		self._buffer.clear()
		self._deferred.clear()  # unacknowledged: the broker hands them out again
		self._unacked = {}  # ready in the queue again
		close_quietly(connection)

	def _on_message(self, channel, method, properties, body: bytes) -> None:
		topic = method.routing_key if method.exchange else self.queue
		self._unacked.setdefault(self.queue, set()).add(method.delivery_tag)
		self._buffer.append(inbound_message(topic, method, properties, body, self._generation))

	def _on_expired(self, channel, method, properties, body: bytes) -> None:
		deaths = (properties.headers or {}).get("x-death") or [{}]
		reason = text(deaths[0].get("reason")) or "unknown"
		self._unacked.setdefault(expired_queue(self.queue), set()).add(method.delivery_tag)
		message = inbound_message(
			expired_queue(self.queue), method, properties, body, self._generation, broker_death=reason
		)
		self._buffer.append(message)

	# -- consuming --------------------------------------------------------------------------

	def poll(self, max_messages: int, timeout: float) -> list[InboundMessage]:
		"""Returns deferred messages that fell due, else what the broker pushed within ``timeout``."""
		now = time.time()
		due = [pair for pair in self._deferred if pair[0] <= now][:max_messages]
		if due:
			# More due than asked for stay deferred: handed out later, never left unacknowledged.
			taken = {id(pair) for pair in due}
			self._deferred = [pair for pair in self._deferred if id(pair) not in taken]
			return [m for _, m in due] + self._take(max_messages - len(due))
		try:
			if self._connection is None:
				self._connect()
			if not self._buffer:
				self._connection.process_data_events(time_limit=timeout)
			if self._cancelled:
				raise TransportUnavailable(f"RabbitMQ cancelled the consumer of queue {self.queue!r}.")
		except (*AMQP_ERRORS, TransportUnavailable) as exc:
			self._drop(exc)
			time.sleep(min(timeout, 1.0))
			return []
		return self._take(max_messages)

	def _take(self, count: int) -> list[InboundMessage]:
		taken = []
		while self._buffer and len(taken) < count:
			taken.append(self._buffer.popleft())
		return taken

	def is_current(self, message: InboundMessage) -> bool:
		"""Tells whether the message came on the current connection (an older one's were requeued)."""
		return message.handle[0] == self._generation and self._channel is not None

	def done(self, message: InboundMessage) -> None:
		"""Acknowledges the message; on a lost connection the broker redelivers it (tracking skips it)."""
		if not self.is_current(message):
			return
		try:
			self._channel.basic_ack(message.handle[1])
		except AMQP_ERRORS as exc:
			self._drop(exc)
			return
		for tags in self._unacked.values():
			tags.discard(message.handle[1])

	def defer(self, message: InboundMessage, until: float) -> None:
		"""Keeps the message unacknowledged and hands it out again at ``until``."""
		if self.is_current(message):
			self._deferred.append((until, message))

	def retry_later(self, message: InboundMessage, attempt: int, delay: float, failure: Failure) -> str:
		"""Publishes a copy to the delay queue of this retry; its TTL brings it back when due."""
		tier = self.retry_delays[min(max(0, attempt - 2), len(self.retry_delays) - 1)]
		headers = forwarded_headers(message, self.group, attempt, failure)
		target = retry_queue(self.queue, tier)
		self._publish("", target, message, headers)
		return target

	def dead_letter(self, message: InboundMessage, failure: Failure, attempts: int) -> str:
		"""Publishes the message with its origin headers to ``<queue>.dead``."""
		headers = forwarded_headers(message, self.group, attempts, failure, dead=True)
		self._publish("", dead_letter_queue(self.queue), message, headers)
		return dead_letter_queue(self.queue)

	def _publish(self, exchange: str, routing_key: str, message: InboundMessage, headers) -> None:
		properties = copy_properties(headers)
		self._confirmed_publish(
			exchange, routing_key, message.body, properties, mandatory=True, redeclare=True
		)

	def _confirmed_publish(
		self,
		exchange: str,
		routing_key: str,
		body: bytes,
		properties,
		mandatory: bool,
		redeclare: bool = False,
	) -> None:
		if self._channel is None:
			raise TransportUnavailable("Not connected to RabbitMQ; the message is kept and tried again.")
		try:
			publish_within_timeout(
				self._connection,
				self._channel,
				(exchange, routing_key),
				body,
				properties,
				mandatory,
				self.confirm_timeout,
			)
		except pika.exceptions.UnroutableError as exc:
			if not redeclare:
				raise TransportUnavailable(
					f"RabbitMQ did not take the message for {routing_key!r}: {exc!r}."
				) from exc
			# Delay and dead-letter queues are this group's own, declared on connecting: one
			# deleted since (by hand, by a clean-up) leaves nothing to route to, and as the
			# connection stays up nothing would declare it again, so every retry or dead letter
			# would be deferred for ever. Declaring is idempotent; then the copy goes once more.
			try:
				declare_group_queues(
					self._channel, self.queue, self.exchange, self.binding_keys, self.retry_delays
				)
			except AMQP_ERRORS as declare_error:
				self._drop(declare_error)
				raise TransportUnavailable(
					f"Cannot declare the queues of group {self.queue!r} again: {declare_error!r}."
				) from declare_error
			self._confirmed_publish(exchange, routing_key, body, properties, mandatory)
		except pika.exceptions.NackError as exc:
			raise TransportUnavailable(
				f"RabbitMQ did not take the message for {routing_key!r}: {exc!r}."
			) from exc
		except AMQP_ERRORS as exc:
			self._drop(exc)
			raise TransportUnavailable(
				f"Lost RabbitMQ while publishing to {routing_key!r}: {exc!r}."
			) from exc

	def check_reply_address(self, request: InboundMessage) -> None:
		"""Refuses a reply queue other than direct reply-to unless the options allow it."""
		self.reply_addresses.check(request.header(REPLY_TO))

	def reply(self, request: InboundMessage, envelope: Envelope) -> None:
		"""Publishes the reply to the requester's reply-to address with its correlation id."""
		reply_to = request.header(REPLY_TO)
		if not reply_to:
			return
		self.check_reply_address(request)
		properties = reply_properties(request, envelope)
		body = envelope.to_json().encode()
		self._confirmed_publish("", reply_to, body, properties, mandatory=reply_is_mandatory(reply_to))

	# -- progress ---------------------------------------------------------------------------

	def _depths(self) -> dict[str, int]:
		if self._channel is None:
			return {}
		try:
			return group_depths(
				self._connection, self._channel, self.queue, self.retry_delays, self.lag_delays
			)
		except AMQP_ERRORS as exc:
			self._drop(exc)
			return {}

	def lag(self) -> list[PartitionLag]:
		"""Returns per queue of the group (its queue, every delay queue that exists, expired
		requests) the ready messages, plus those this consumer holds unacknowledged (in_flight)."""
		held = {queue: len(tags) for queue, tags in self._unacked.items()}
		consumed = (self.queue, expired_queue(self.queue))
		return [
			PartitionLag(
				queue,
				0,
				None,
				None,
				depth + held.get(queue, 0),
				held.get(queue, 0) if queue in consumed else None,
			)
			for queue, depth in self._depths().items()
		]

	def idle(self) -> bool:
		"""Tells whether nothing is buffered, deferred, queued or waiting in a delay queue."""
		if self._buffer or self._deferred or self._channel is None:
			return False
		depths = self._depths()
		return bool(depths) and not any(depths.values())

	def close(self) -> None:
		"""Stops consuming and disconnects; unacknowledged messages go back to the queue."""
		connection, self._connection, self._channel = self._connection, None, None
		close_quietly(connection)
