"""Transport adapters, chosen by URL scheme: ``kafka://``, ``amqp://`` (``amqps://``), ``memory://``.

Adapters are imported on first use, so a site without Kafka never loads librdkafka.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from cauldron_fabric.core.errors import UnknownTransport
from cauldron_fabric.core.ports import Transport

ADAPTERS: dict[str, str] = {
	"kafka": "cauldron_fabric.core.transports.kafka:KafkaTransport",
	"memory": "cauldron_fabric.core.transports.memory:MemoryTransport",
	"amqp": "cauldron_fabric.core.transports.rabbitmq:RabbitMQTransport",
	"amqps": "cauldron_fabric.core.transports.rabbitmq:RabbitMQTransport",
}


def register_transport(scheme: str, dotted: str) -> None:
	"""Registers an adapter class (``module:Class``) for a URL scheme."""
	ADAPTERS[scheme] = dotted


def open_transport(url: str, options: Mapping[str, Any] | None = None) -> Transport:
	"""Returns a transport for ``url`` built by the adapter registered for its scheme."""
	_, adapter = adapter_for(ADAPTERS, url, "transport")
	return adapter.from_url(url, dict(options or {}))


def adapter_for(adapters: Mapping[str, str], url: str, kind: str) -> tuple[str, type]:
	"""Returns the scheme of ``url`` and the class ``adapters`` registers for it (``module:Class``).

	Raises UnknownTransport naming the schemes there are when none is registered; ``kind``
	says what was looked for ("transport", "consumer adapter" …).
	"""
	scheme = urlsplit(url).scheme
	dotted = adapters.get(scheme)
	if not dotted:
		raise UnknownTransport(
			f"No {kind} for {scheme or 'a URL without scheme'!r} ({url!r}).",
			hint=f"Use one of: {', '.join(s + '://' for s in sorted(adapters))}.",
		)
	module_name, _, class_name = dotted.partition(":")
	return scheme, getattr(importlib.import_module(module_name), class_name)
