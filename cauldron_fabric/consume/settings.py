"""What consumers and requesters read from Fabric Settings, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import frappe
from frappe.utils import cint, flt

from cauldron_fabric.core.consumer.ports import CircuitPolicy
from cauldron_fabric.core.consumer.reply_addresses import reply_address_patterns
from cauldron_fabric.core.errors import ConfigurationError

BROKERS = ("kafka", "rabbitmq")
# What to fill in Fabric Settings for a broker that was asked for by name.
SETTING_OF = {"kafka": "the Kafka bootstrap servers", "rabbitmq": "the RabbitMQ URL"}


@dataclass(frozen=True)
class ConsumerSettings:
	"""The broker to consume from and how handlers run; equal settings need no rebuild."""

	broker_url: str
	group: str
	handler_user: str
	max_attempts: int
	crash_limit: int
	topic_template: str
	request_timeout: float
	circuit: CircuitPolicy
	broker_options: dict[str, Any] = field(default_factory=dict)
	# Other reply addresses: patterns of topics or queues responders may reply to, besides their own.
	reply_addresses: tuple[str, ...] = ()

	@property
	def broker(self) -> str:
		"""Returns ``kafka`` or ``rabbitmq``."""
		return "kafka" if self.broker_url.startswith("kafka") else "rabbitmq"


def load_consumer_settings(broker: str | None = None) -> ConsumerSettings:
	"""Reads Fabric Settings afresh; ``broker`` picks one when both are set (Kafka by default).

	Raises ConfigurationError when no broker is configured, saying which fields to fill.
	"""
	from cauldron_fabric.services.relay import kafka_connection, rabbitmq_connection

	if broker and broker not in BROKERS:
		raise ConfigurationError(f"Unknown broker {broker!r}.", hint="Use kafka or rabbitmq.")
	frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
	settings = frappe.get_single("Fabric Settings")
	connections = {"kafka": kafka_connection(settings), "rabbitmq": rabbitmq_connection(settings)}
	chosen = broker or ("kafka" if connections["kafka"] else "rabbitmq")
	if connections[chosen] is None:
		raise _not_configured(broker)
	url, options = connections[chosen]
	timeout = flt(settings.request_timeout_seconds) or 10.0
	return ConsumerSettings(
		broker_url=url,
		group=(settings.consumer_group or "").strip() or "cauldron-fabric",
		handler_user=settings.handler_user or "Administrator",
		max_attempts=min(max(cint(settings.consumer_max_attempts) or 5, 1), 20),
		crash_limit=min(max(cint(settings.consumer_crash_limit) or 3, 1), 20),
		topic_template=settings.topic_template or "cauldron.{domain}",
		request_timeout=timeout,
		circuit=CircuitPolicy(
			failure_threshold=max(cint(settings.circuit_failure_threshold) or 5, 1),
			window_seconds=max(cint(settings.circuit_window_seconds) or 60, 1),
			open_seconds=max(cint(settings.circuit_open_seconds) or 30, 1),
			probe_seconds=max(timeout, 1.0),
		),
		broker_options=dict(options),
		reply_addresses=reply_address_patterns(settings.allowed_reply_addresses),
	)


def redis_url() -> str:
	"""Returns the Redis the site's workers share (its cache), where circuit states live."""
	return frappe.conf.redis_cache or "redis://127.0.0.1:6379"


def redis_prefix() -> str:
	"""Returns the key prefix of this site's fabric state in Redis."""
	return f"cauldron_fabric:{frappe.local.site}:"


def _not_configured(broker: str | None) -> ConfigurationError:
	"""Returns the error for a missing connection, naming only the setting that would give it.

	A broker asked for by name (a dead letter goes back to the one it came from) is not served by
	the other one's setting; with none named, either serves (Kafka is the default).
	"""
	if broker:
		return ConfigurationError(
			f"No {broker} connection is configured: there is no bus to consume from or send requests over.",
			hint=f"Set {SETTING_OF[broker]} in Fabric Settings.",
		)
	return ConfigurationError(
		"No Kafka or RabbitMQ connection is configured: there is no bus to consume from or send requests over.",
		hint="Set the Kafka bootstrap servers or the RabbitMQ URL in Fabric Settings.",
	)
