"""A consumer group's lag as the broker sees it, whether or not any of its consumers runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import pika
import pika.exceptions

from cauldron_fabric.consume.handlers import load_handler_table
from cauldron_fabric.consume.runner import default_topics
from cauldron_fabric.consume.settings import load_consumer_settings
from cauldron_fabric.core.consumer.factory import every_retry_delay, kafka_bootstrap
from cauldron_fabric.core.consumer.kafka_group import group_lag, retry_prefix
from cauldron_fabric.core.consumer.options import ConsumerOptions
from cauldron_fabric.core.consumer.rabbitmq_queues import queue_depth, retry_queue
from cauldron_fabric.core.errors import ConfigurationError, TransportUnavailable
from cauldron_fabric.core.transports.amqp import connection_parameters


def broker_lag(
	group: str | None = None, topics: Sequence[str] = (), broker: str | None = None
) -> list[dict[str, Any]]:
	"""Returns the lag per partition (Kafka, retry topics included) or the group queue's depth (RabbitMQ)."""
	settings = load_consumer_settings(broker)
	group = group or settings.group
	if settings.broker == "rabbitmq":
		# Retries wait in delay queues before coming back: they are lag too, as Kafka's retry
		# topics are, those of a higher attempts setting included.
		delays = every_retry_delay(ConsumerOptions(group=group, max_attempts=settings.max_attempts))
		waiting = [retry_queue(group, delay) for delay in sorted(set(delays))]
		return queue_depths(settings.broker_url, settings.broker_options, group, waiting)
	chosen = list(topics) or default_topics(settings, load_handler_table(settings.handler_user))
	# Every retry topic of the group: after its attempts are lowered, copies still wait in
	# the higher ones (its consumers read them all).
	lags = group_lag(
		kafka_bootstrap(settings.broker_url),
		group,
		chosen,
		settings.broker_options,
		prefixes=[retry_prefix(group)],
	)
	# The broker lists only topics that exist: a misspelt one would add nothing and the
	# group would look caught up. Retry topics appear with the first retry, so they may be absent.
	missing = sorted(set(topics) - {lag.topic for lag in lags})
	if missing:
		raise ConfigurationError(
			f"Kafka has no topic {', '.join(repr(t) for t in missing)}, so it has no lag to report.",
			hint="Check the topic names (the consumer's --topics) or leave topics out for the defaults.",
		)
	return [asdict(lag) for lag in lags]


def queue_depths(
	url: str, options: dict, queue: str, delay_queues: Sequence[str] = ()
) -> list[dict[str, Any]]:
	"""Returns the ready messages of a group's queue and of its delay queues, each as one partition.

	A delay queue not declared yet (no retry so far) holds nothing and is left out. Messages
	delivered to a running consumer and not acknowledged yet are no queue's ready messages: AMQP
	tells them to that consumer alone, which reports them (``in_flight``, see get_consumers).
	"""
	try:
		connection = pika.BlockingConnection(connection_parameters(url, options))
	except (pika.exceptions.AMQPError, OSError) as exc:
		raise TransportUnavailable(f"RabbitMQ did not answer: {exc!r}.") from exc
	depths = []
	try:
		for name in (queue, *delay_queues):
			count = queue_depth(connection, name)
			if count is None and name != queue:
				continue
			if count is None:
				raise TransportUnavailable(
					f"Consumer group {queue!r} has no queue on RabbitMQ yet.",
					hint="Its queue is declared when a consumer of the group first starts; check the group's name.",
				)
			depths.append(
				{"topic": name, "partition": 0, "position": None, "high_watermark": None, "lag": count}
			)
	finally:
		if connection.is_open:
			connection.close()
	return depths
