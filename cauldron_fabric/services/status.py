"""The state of the fabric on this site: outbox depth, failures, relays, deliveries, versions."""

from __future__ import annotations

from typing import Any

import frappe
from frappe.utils import get_datetime, now_datetime

from cauldron_fabric import __version__
from cauldron_fabric.core.outbox.statements import DEFAULT_TABLE, FAILED, PENDING
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.services.heartbeats import read_heartbeats
from cauldron_fabric.services.relay import STATUS_KEY

# A status count stops past this many rows. It reads one index entry per row counted, and the
# status is polled: a backlog of 900,000 took 600 ms a count; 10,001 entries take a few ms.
STATUS_COUNT_CAP = 10_000


def capped_count(table: str, where: str, params: tuple, cap: int = STATUS_COUNT_CAP) -> tuple[int, bool]:
	"""Returns how many rows of ``table`` match ``where`` (at most ``cap``) and whether more do.

	The count reads at most ``cap + 1`` index entries. Past the cap it gives ``cap`` and True:
	"more than ``cap``", a bound that is never wrong, where an estimate could be.
	"""
	found = frappe.db.sql(capped_count_sql(table, where, cap), params)[0][0]
	return min(int(found), cap), int(found) > cap


def capped_count_sql(table: str, where: str, cap: int = STATUS_COUNT_CAP) -> str:
	"""Returns the statement capped_count runs: a COUNT over at most ``cap + 1`` matching rows."""
	return f"SELECT COUNT(*) FROM (SELECT 1 FROM `{table}` WHERE {where} LIMIT {int(cap) + 1}) AS counted"


def outbox_status() -> dict[str, Any]:
	"""Returns pending and failed counts (capped, see capped_count) and the age of the oldest
	pending event.

	Every read stays in the status index: the counts read only its entries, and the oldest
	pending event is the one with the lowest id (ids are drawn as events are appended), one row
	read. MIN(creation) read every pending row, and with a backlog (a broker down for a day)
	MariaDB scanned the whole Event Log for it on every heartbeat.
	"""
	pending, pending_capped = capped_count(DEFAULT_TABLE, "status = %s", (PENDING,))
	failed, failed_capped = capped_count(DEFAULT_TABLE, "status = %s", (FAILED,))
	oldest = frappe.db.sql(
		f"SELECT creation FROM `{DEFAULT_TABLE}` WHERE status = %s ORDER BY name LIMIT 1",
		(PENDING,),
	)
	oldest = oldest[0][0] if oldest else None
	age = (now_datetime() - get_datetime(oldest)).total_seconds() if oldest else 0
	return {
		"pending": pending,
		"pendingCapped": pending_capped,
		"failed": failed,
		"failedCapped": failed_capped,
		"oldestPendingSeconds": round(max(age, 0), 3),
	}


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
