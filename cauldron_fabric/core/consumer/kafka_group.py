"""A Kafka consumer group as the broker knows it: the topics it owns, its settings, its lag.

A group owns its retry topics ``<group>.retry.<n>`` and its dead-letter topic ``<group>.dlt``
(the group's name with what Kafka refuses in a topic name replaced). Its members join with
manual offsets (``consumer_config``). Its lag per partition is read from one member's own
offsets (``member_lag``, for ``KafkaSource.lag``) or from the offsets the group committed,
whether or not any member runs (``group_lag``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from cauldron_fabric.core.consumer.messages import PartitionLag
from cauldron_fabric.core.errors import ConfigurationError, TransportUnavailable
from cauldron_fabric.core.transports.kafka import ClientLog, kafka_config

log = logging.getLogger("cauldron_fabric.consumer.kafka")

_ILLEGAL = re.compile(r"[^a-zA-Z0-9._-]+")


def retry_prefix(group: str) -> str:
	"""Returns how every retry topic of a consumer group starts."""
	return f"{_ILLEGAL.sub('_', group)}.retry."


def retry_topic(group: str, number: int) -> str:
	"""Returns the topic of retry number ``number`` (1 for the first retry) of a consumer group."""
	return f"{retry_prefix(group)}{number}"


def dead_letter_topic(group: str) -> str:
	"""Returns the dead-letter topic of a consumer group."""
	return f"{_ILLEGAL.sub('_', group)}.dlt"


def consumer_config(bootstrap: str, group: str, options: dict[str, Any]) -> dict[str, Any]:
	"""Returns the librdkafka settings of a fabric consumer: manual offsets, fast failover."""
	if not group or not group.strip():
		raise ConfigurationError(
			"A consumer needs a consumer group.", hint="Pass --group or set it in Fabric Settings."
		)
	config = {
		**kafka_config(bootstrap, {**options, "extra": {}}),
		"group.id": group,
		"enable.auto.commit": False,
		"enable.auto.offset.store": False,
		"auto.offset.reset": options.get("auto_offset_reset") or "earliest",
		"partition.assignment.strategy": options.get("assignment_strategy") or "cooperative-sticky",
		"session.timeout.ms": int(options.get("session_timeout_ms") or 10_000),
		"max.poll.interval.ms": int(options.get("max_poll_interval_ms") or 300_000),
	}
	if options.get("fetch_wait_ms"):
		config["fetch.wait.max.ms"] = int(options["fetch_wait_ms"])
	if options.get("metadata_refresh_ms"):
		config["topic.metadata.refresh.interval.ms"] = int(options["metadata_refresh_ms"])
	config.update(options.get("consumer_extra") or {})
	return config


def member_lag(
	consumer: Consumer, admin: AdminClient, keys: list[tuple[str, int]], done: dict[tuple[str, int], int]
) -> list[PartitionLag]:
	"""Returns per partition of a member the high watermark, the next offset to process and the gap.

	``done`` holds the next offset of the partitions the member finished messages on; the others
	start at their committed offset. Costs at most three broker round trips, whatever the number
	of partitions.
	"""
	positions = dict(done)
	unknown = [TopicPartition(*key) for key in keys if key not in positions]
	if unknown:
		try:
			for p in consumer.committed(unknown, timeout=5):
				if p.offset >= 0:
					positions[(p.topic, p.partition)] = p.offset
		except KafkaException as exc:
			log.info("could not read committed offsets: %s", exc)
	# The watermark of the last fetch response comes first: it costs nothing, and some
	# Kafka-protocol brokers answer offset queries with the start of the last batch.
	highs = {key: consumer.get_watermark_offsets(TopicPartition(*key), cached=True)[1] for key in keys}
	highs.update(list_offsets(admin, [k for k in keys if highs[k] == OFFSET_INVALID], OffsetSpec.latest()))
	positions.update(list_offsets(admin, [k for k in keys if k not in positions], OffsetSpec.earliest()))
	known = {key: high for key, high in highs.items() if high != OFFSET_INVALID}
	return partition_lags(keys, positions, known)


def group_lag(
	bootstrap: str,
	group: str,
	topics: Sequence[str],
	options: dict[str, Any] | None = None,
	timeout: float = 5.0,
	prefixes: Sequence[str] = (),
) -> list[PartitionLag]:
	"""Returns the lag of a consumer group on ``topics`` as the broker sees it (committed offsets).

	Every existing topic whose name starts with one of ``prefixes`` counts too (a group's retry
	topics: copies may wait in more of them than the current attempts setting names).
	"""
	options = dict(options or {})
	admin = AdminClient({**kafka_config(bootstrap, {**options, "extra": {}}), "error_cb": lambda _e: None})
	consumer = Consumer(
		{
			**consumer_config(bootstrap, group, options),
			"logger": ClientLog(log),
			"error_cb": lambda _e: None,
		}
	)
	try:
		metadata = admin.list_topics(timeout=timeout)
		prefixed = sorted(t for t in metadata.topics if t.startswith(tuple(prefixes)) and t not in topics)
		keys = [
			(topic, number)
			for topic in [*topics, *prefixed]
			if topic in metadata.topics
			for number in sorted(metadata.topics[topic].partitions)
		]
		committed = (
			consumer.committed([TopicPartition(*key) for key in keys], timeout=timeout) if keys else []
		)
	except KafkaException as exc:
		raise TransportUnavailable(
			f"Kafka at {bootstrap} did not report the offsets of group {group!r}: {exc}."
		) from exc
	finally:
		consumer.close()
	positions = {(p.topic, p.partition): p.offset for p in committed if p.offset >= 0}
	highs = list_offsets(admin, keys, OffsetSpec.latest())
	positions.update(list_offsets(admin, [k for k in keys if k not in positions], OffsetSpec.earliest()))
	return partition_lags(keys, positions, highs)


def partition_lags(
	keys: list[tuple[str, int]], positions: dict[tuple[str, int], int], highs: dict[tuple[str, int], int]
) -> list[PartitionLag]:
	"""Returns the lag of each partition in ``keys``; unknown where its position or its high is."""
	result = []
	for key in keys:
		position, high = positions.get(key), highs.get(key)
		lag = max(0, high - position) if position is not None and high is not None else None
		result.append(PartitionLag(key[0], key[1], position, high, lag))
	return result


def list_offsets(
	admin: AdminClient, keys: list[tuple[str, int]], spec: OffsetSpec
) -> dict[tuple[str, int], int]:
	"""Returns the earliest or latest offset of partitions in one request (empty when Kafka did not answer)."""
	if not keys:
		return {}
	try:
		futures = admin.list_offsets({TopicPartition(*key): spec for key in keys}, request_timeout=5)
		return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
	except KafkaException as exc:
		log.info("could not list offsets: %s", exc)
		return {}
