"""Sources and requesters chosen by URL scheme (``kafka://``, ``amqp://``, ``amqps://``).

Adapters are imported on first use, so a site on RabbitMQ never loads librdkafka.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from cauldron_fabric.core.consumer.circuit import CircuitBreaker
from cauldron_fabric.core.consumer.messages import DEFAULT_REPLY_TOPIC
from cauldron_fabric.core.consumer.options import ConsumerOptions
from cauldron_fabric.core.consumer.ports import MessageSource
from cauldron_fabric.core.consumer.requests import Requester
from cauldron_fabric.core.transports import adapter_for

SOURCES = {
	"kafka": "cauldron_fabric.core.consumer.kafka:KafkaSource",
	"amqp": "cauldron_fabric.core.consumer.rabbitmq:RabbitMQSource",
	"amqps": "cauldron_fabric.core.consumer.rabbitmq:RabbitMQSource",
}
REQUESTERS = {
	"kafka": "cauldron_fabric.core.consumer.requests_kafka:KafkaRequester",
	"amqp": "cauldron_fabric.core.consumer.requests_rabbitmq:RabbitMQRequester",
	"amqps": "cauldron_fabric.core.consumer.requests_rabbitmq:RabbitMQRequester",
}


def kafka_bootstrap(url: str) -> str:
	"""Returns ``host:port,…`` of a ``kafka://`` URL."""
	parts = urlsplit(url)
	return unquote(parts.netloc or parts.path.lstrip("/"))


def retry_delays(options: ConsumerOptions) -> list[float]:
	"""Returns the delay before each retry (first retry first) under the options' backoff."""
	return [options.backoff.delay(n) for n in range(1, max(2, options.max_attempts))]


def every_retry_delay(options: ConsumerOptions, limit: int = 64) -> list[float]:
	"""Returns every delay the options' backoff gives a retry, whatever the attempts setting.

	RabbitMQ's delay queues are named after their delay: after the attempts are lowered,
	retries still wait in those of the higher setting, and come back to the group when due.
	"""
	delays: list[float] = []
	for attempt in range(1, limit + 1):
		delay = options.backoff.delay(attempt)
		if delay in delays:  # at the ceiling: every later retry waits as long
			break
		delays.append(delay)
	return delays


def open_source(
	url: str,
	options: ConsumerOptions,
	topics: Sequence[str] = (),
	*,
	pattern: str | None = None,
	broker_options: dict[str, Any] | None = None,
) -> MessageSource:
	"""Returns the source for ``url``: Kafka topics (or a regex pattern), or RabbitMQ binding keys."""
	scheme, adapter = adapter_for(SOURCES, url, "consumer adapter")
	if scheme == "kafka":
		return adapter(
			kafka_bootstrap(url),
			options.group,
			topics,
			pattern=pattern,
			retry_tiers=max(1, options.max_attempts - 1),
			options=broker_options,
		)
	keys = list(topics) or ([pattern] if pattern else [])
	return adapter(
		url,
		options.group,
		keys,
		retry_delays=retry_delays(options),
		lag_delays=every_retry_delay(options),
		options=broker_options,
	)


def open_requester(
	url: str,
	*,
	source: str,
	breaker: CircuitBreaker | None = None,
	default_timeout: float = 10.0,
	topic_template: str | None = None,
	broker_options: dict[str, Any] | None = None,
) -> Requester:
	"""Returns the requester for ``url`` with an optional circuit breaker."""
	scheme, adapter = adapter_for(REQUESTERS, url, "consumer adapter")
	common: dict[str, Any] = {"source": source, "breaker": breaker, "default_timeout": default_timeout}
	if topic_template:
		common["topic_template"] = topic_template
	if scheme == "kafka":
		reply_topic = (broker_options or {}).get("reply_topic") or DEFAULT_REPLY_TOPIC
		return adapter(kafka_bootstrap(url), reply_topic=reply_topic, options=broker_options, **common)
	return adapter(url, options=broker_options, **common)
