"""The state of the fabric on this site: outbox depth, failures, relays, deliveries, versions."""

from __future__ import annotations

from typing import Any

import frappe
from frappe.utils import get_datetime, now_datetime

from cauldron_fabric import __version__
from cauldron_fabric.core.outbox.statements import FAILED, PENDING
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.services.heartbeats import read_heartbeats
from cauldron_fabric.services.relay import STATUS_KEY


def outbox_status() -> dict[str, Any]:
	"""Returns pending and failed counts and the age of the oldest pending event.

	Every read stays in the status index: the counts read only its entries, and the oldest
	pending event is the one with the lowest id (ids are drawn as events are appended), one row
	read. MIN(creation) read every pending row, and with a backlog (a broker down for a day)
	MariaDB scanned the whole Event Log for it on every heartbeat.
	"""
	count = "SELECT COUNT(*) FROM `tabEvent Log` WHERE status = %s"
	pending = frappe.db.sql(count, (PENDING,))[0][0]
	failed = frappe.db.sql(count, (FAILED,))[0][0]
	oldest = frappe.db.sql(
		"SELECT creation FROM `tabEvent Log` WHERE status = %s ORDER BY name LIMIT 1",
		(PENDING,),
	)
	oldest = oldest[0][0] if oldest else None
	age = (now_datetime() - get_datetime(oldest)).total_seconds() if oldest else 0
	return {"pending": int(pending), "failed": int(failed), "oldestPendingSeconds": round(max(age, 0), 3)}


def relay_statuses() -> list[dict[str, Any]]:
	"""Returns each relay's last heartbeat, totals and error, marking silent ones as stale."""
	return read_heartbeats(STATUS_KEY)


def site_status() -> dict[str, Any]:
	"""Returns the payload of the ``system.status`` heartbeat (and of ``bench fabric status``)."""
	from cauldron_fabric.delivery.status import delivery_queue_status, delivery_worker_statuses

	return {
		"site": frappe.local.site,
		"frappeVersion": frappe.__version__,
		"fabricVersion": __version__,
		"outbox": outbox_status(),
		"relays": [r for r in relay_statuses() if not r["stale"]],
		"deliveries": delivery_queue_status(),
		"deliveryWorkers": [w for w in delivery_worker_statuses() if not w["stale"]],
		"publishing": current_policy().publishing,
	}
