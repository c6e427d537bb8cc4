"""Helpers of the consumer tests: a real broker for a test class, publishing, consuming until idle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import frappe

from cauldron_fabric.consume.runner import run_consumer_for
from cauldron_fabric.core.consumer import ConsumerCounts
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.relay import Relay, RelayOptions
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.services.relay import site_db_connector
from cauldron_fabric.testing.kafka_broker import produce
from cauldron_fabric.tests.utils import fabric_settings

# Tansu joins a group in about half the session timeout; tests keep it short.
FAST_JOIN = {"session_timeout_ms": 6000}


def publish(bootstrap: str, topic: str, messages: list[Envelope | bytes]) -> None:
	"""Produces events in the fabric's Kafka form (raw bytes as they are), one batch each."""
	produce(bootstrap, topic, messages)


def consume(
	group: str, topics: list[str] | None = None, seconds: float = 40, **options: Any
) -> ConsumerCounts:
	"""Runs the site's consumer until it has nothing left (committing as it goes); returns its counts."""
	frappe.db.commit()  # the consumer works in its own transactions on this connection
	counts = run_consumer_for(
		group=group,
		topics=topics or (),
		stop_when_idle=True,
		max_seconds=seconds,
		broker_options=FAST_JOIN,
		**options,
	)
	frappe.db.rollback()
	return counts


def relay_outbox(bootstrap: str, topic_template: str, seconds: float = 30) -> None:
	"""Publishes the site's pending outbox rows to Kafka with the core relay, on its own connection."""
	store = SqlOutboxStore(site_db_connector())
	transport = open_transport(f"kafka://{bootstrap}", {"message_timeout_ms": 3000})
	relay = Relay(store, transport, RelayOptions(topic_template=topic_template))
	deadline = time.monotonic() + seconds
	try:
		while store.pending_count() and time.monotonic() < deadline:
			relay.relay_pending_events()
	finally:
		store.close()
		transport.close()


def dead_letters(group: str) -> list[dict[str, Any]]:
	"""Returns a group's Dead Letter documents, oldest first, with their attempt log parsed."""
	rows = frappe.get_all(
		"Dead Letter",
		filters={"source_type": "Consumer", "consumer_group": group},
		fields=[
			"name",
			"status",
			"event_id",
			"event_type",
			"attempts",
			"error_class",
			"last_error",
			"attempt_log",
			"origin_topic",
			"origin_partition",
			"origin_offset",
			"reference",
		],
		order_by="creation asc",
	)
	for row in rows:
		row["log"] = json.loads(row.pop("attempt_log") or "{}")
	return rows


def in_another_session(function: Callable, *args) -> tuple[threading.Thread, list[Exception]]:
	"""Starts ``function(*args)`` on a connection of its own, as another process would run it;
	returns the thread and the errors it raised."""
	site, sites_path, errors = frappe.local.site, frappe.local.sites_path, []

	def run() -> None:
		frappe.init(site=site, sites_path=sites_path)
		frappe.connect()
		try:
			function(*args)
		except Exception as exc:
			errors.append(exc)
		finally:
			frappe.destroy()

	thread = threading.Thread(target=run, daemon=True)
	thread.start()
	return thread, errors


def use_rabbitmq_for_class(case: type, prefix: str, **settings: Any) -> None:
	"""Points Fabric Settings at the local RabbitMQ for the whole TestCase class ``case`` (from its
	setUpClass) with an exchange of its own, ``case.exchange``; ``settings`` are set too."""
	case.exchange = f"{prefix}.{frappe.generate_hash(length=6)}"
	context = fabric_settings(
		rabbitmq_url="amqp://guest@127.0.0.1:5672/%2F",
		rabbitmq_password="guest",
		rabbitmq_exchange=case.exchange,
		**settings,
	)
	context.__enter__()
	case.addClassCleanup(context.__exit__, None, None, None)
