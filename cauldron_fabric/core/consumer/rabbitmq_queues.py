"""A consumer group's queues on RabbitMQ: their names, their arguments and their bindings.

The group's queue is named after the group and bound to the topic exchange with AMQP patterns
of event types (``amqp_binding_key``). A failed message waits in a delay queue
``<queue>.retry.<ms>ms`` whose message TTL dead-letters it back into the group's queue when
due; dead letters go to ``<queue>.dead``.

A request expires in the group's queue when no member took it within its timeout (its message
TTL); the broker then dead-letters it through ``<exchange>.dlx`` into ``<queue>.expired``, which
every member drains. Earlier versions bound ``<queue>.dead`` there instead, where expired
requests piled up unread; the queues' arguments are unchanged (RabbitMQ refuses to redeclare a
queue with others), only that binding moves.
"""

from __future__ import annotations

from collections.abc import Sequence

import pika.exceptions

NOT_FOUND = 404  # AMQP: no such queue

# Expired requests kept while no member of the group drains them (the oldest go first); each
# was a timeout at its requester already. Declared once: a new value needs a new queue name.
EXPIRED_KEPT = 10_000


def retry_queue(queue: str, delay: float) -> str:
	"""Returns the delay queue that holds a group's retries of one delay."""
	return f"{queue}.retry.{int(delay * 1000)}ms"


def dead_letter_queue(queue: str) -> str:
	"""Returns the queue a group's dead letters end up in."""
	return f"{queue}.dead"


def expired_queue(queue: str) -> str:
	"""Returns the queue the broker dead-letters a group's expired requests to."""
	return f"{queue}.expired"


def declare_group_queues(
	channel, queue: str, exchange: str, binding_keys: Sequence[str], delays: Sequence[float]
) -> None:
	"""Declares the group's queue with its bindings, its delay queues and its dead-letter queue."""
	dlx = f"{exchange}.dlx"
	channel.exchange_declare(exchange, "topic", durable=True)
	channel.exchange_declare(dlx, "direct", durable=True)
	channel.queue_declare(dead_letter_queue(queue), durable=True)
	# What the broker dead-letters from the group's queue goes to <queue>.expired, drained by the
	# consumers; <queue>.dead (bound there by earlier versions) keeps only the consumers' own.
	channel.queue_unbind(dead_letter_queue(queue), dlx, routing_key=queue)
	channel.queue_declare(expired_queue(queue), durable=True, arguments={"x-max-length": EXPIRED_KEPT})
	channel.queue_bind(expired_queue(queue), dlx, routing_key=queue)
	channel.queue_declare(
		queue, durable=True, arguments={"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": queue}
	)
	for key in binding_keys:
		channel.queue_bind(queue, exchange, routing_key=key)
	for delay in sorted(set(delays)):
		channel.queue_declare(
			retry_queue(queue, delay),
			durable=True,
			arguments={
				"x-message-ttl": int(delay * 1000),
				"x-dead-letter-exchange": "",
				"x-dead-letter-routing-key": queue,
			},
		)


def queue_depth(connection, queue: str) -> int | None:
	"""Returns a queue's ready messages, or None when it does not exist.

	Asked on a channel of its own: the broker closes the channel that names a missing queue.
	"""
	channel = connection.channel()
	try:
		count = channel.queue_declare(queue, passive=True).method.message_count
	except pika.exceptions.ChannelClosedByBroker as exc:
		if exc.reply_code == NOT_FOUND:
			return None
		raise
	channel.close()
	return count


def group_depths(
	connection, channel, queue: str, delays: Sequence[float], other_delays: Sequence[float] = ()
) -> dict[str, int]:
	"""Returns the ready messages of the group's queue, of its delay queues and of its expired
	requests, declared on ``channel``; and of the delay queues of ``other_delays`` that exist."""
	queues = [queue, *(retry_queue(queue, d) for d in sorted(set(delays))), expired_queue(queue)]
	depths = {q: channel.queue_declare(q, passive=True).method.message_count for q in queues}
	for name in (retry_queue(queue, d) for d in other_delays):
		if (depth := queue_depth(connection, name)) is not None:
			depths[name] = depth
	return depths


def amqp_binding_key(pattern: str) -> str:
	"""Returns the AMQP binding key of an event type pattern: ``**`` becomes ``#``.

	A lone ``*`` matches every event as a handler pattern (``core.delivery.matching``: no type
	has a single word), but as a binding key only one-word routing keys: it becomes ``#`` too,
	or the queue would be bound for nothing its handlers take.
	"""
	cleaned = pattern.strip()
	if cleaned == "*":
		return "#"
	return ".".join("#" if word == "**" else word for word in cleaned.split("."))
