"""Consumers over the API: who is consuming, processed and failed counts, lag per partition.

``GET /api/method/cauldron_fabric.api.consumers.get_consumers`` reports what each running consumer
process last said (every few seconds); ``get_lag`` asks the broker for a group's committed lag.
"""

from __future__ import annotations

from typing import Any

import frappe
from frappe import _

from cauldron_fabric.api.params import text_param
from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.core.errors import FabricError


@frappe.whitelist(methods=["GET"])
def get_consumers(group: str | None = None) -> dict[str, Any]:
	"""Returns each consumer's heartbeat, totals (processed, failed, retried, dead-lettered…) and lag."""
	require_role()
	from cauldron_fabric.consume.status import consumer_statuses

	text_param(group, "group")
	consumers = consumer_statuses(group)
	return {"consumers": consumers, "totals": _totals(c for c in consumers if not c["stale"])}


@frappe.whitelist(methods=["GET"])
def get_lag(group: str | None = None, topics: str | None = None, broker: str | None = None) -> dict[str, Any]:
	"""Returns a group's lag per partition as the broker sees it (Kafka: committed offsets; RabbitMQ: queue depth)."""
	require_role()
	from cauldron_fabric.consume.lag import broker_lag

	for name, value in (("group", group), ("topics", topics), ("broker", broker)):
		text_param(value, name)
	try:
		partitions = broker_lag(group, [t.strip() for t in (topics or "").split(",") if t.strip()], broker)
	except FabricError as exc:
		frappe.throw(str(exc), title=_("Lag unavailable"))
	return {"partitions": partitions, "lag": sum(p["lag"] or 0 for p in partitions)}


def _totals(consumers) -> dict[str, int]:
	totals: dict[str, int] = {}
	for consumer in consumers:
		for key, value in consumer["totals"].items():
			totals[key] = totals.get(key, 0) + value
	return totals
