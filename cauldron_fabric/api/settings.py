"""Fabric Settings actions: test the Kafka and RabbitMQ connections, read the relay and delivery status."""

from __future__ import annotations

from typing import Any

import frappe

from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.core.errors import FabricError
from cauldron_fabric.emit.policy import DEFAULT_DENIED


@frappe.whitelist(methods=["POST"])
def test_connection() -> dict[str, Any]:
	"""Connects to Kafka with the saved settings and says what it found or what is wrong."""
	require_role()
	from cauldron_fabric.services.relay import check_connection

	try:
		report = check_connection()
	except FabricError as exc:
		return {"ok": False, "summary": str(exc), "details": {}}
	return {"ok": report.ok, "summary": report.summary, "details": dict(report.details)}


@frappe.whitelist(methods=["POST"])
def test_rabbitmq_connection() -> dict[str, Any]:
	"""Connects to RabbitMQ with the saved settings and says what it found or what is wrong."""
	require_role()
	from cauldron_fabric.delivery.connections import check_rabbitmq_connection

	settings = frappe.get_single("Fabric Settings")
	password = (
		settings.get_password("rabbitmq_password", raise_exception=False)
		if settings.rabbitmq_password
		else None
	)
	try:
		report = check_rabbitmq_connection(settings.rabbitmq_url, password, settings.rabbitmq_exchange)
	except FabricError as exc:
		return {"ok": False, "summary": str(exc), "details": {}}
	return {"ok": report.ok, "summary": report.summary, "details": dict(report.details)}


@frappe.whitelist(methods=["GET"])
def get_status() -> dict[str, Any]:
	"""Returns the outbox and delivery queue depths, the relays' and delivery workers' heartbeats, the deny list."""
	require_role()
	from cauldron_fabric.delivery.status import delivery_queue_status, delivery_worker_statuses
	from cauldron_fabric.services.status import outbox_status, relay_statuses

	return {
		"outbox": outbox_status(),
		"relays": relay_statuses(),
		"deliveries": delivery_queue_status(),
		"deliveryWorkers": delivery_worker_statuses(),
		"defaultDenied": sorted(DEFAULT_DENIED),
	}
