"""The state of deliveries on this site: the delivery workers' heartbeats and the queue's depth.

Each worker (``bench fabric deliver`` as ``host:pid``, the scheduler's safety net as
``host:scheduler``) publishes its totals, last error, attempts in flight and overdue attempts
to Redis at most once a second (core/delivery/heartbeat.py); silent ones are shown stale and
forgotten like relays (services/heartbeats.py).
"""

from __future__ import annotations

from typing import Any

import frappe
from frappe.utils import get_datetime, now_datetime

from cauldron_fabric.core.delivery import DEAD, PENDING, DeliveryHeartbeat
from cauldron_fabric.core.delivery.store_sql import DEFAULT_TABLE
from cauldron_fabric.services.heartbeats import read_heartbeats, remove_heartbeat, write_heartbeat

WORKERS_KEY = "cauldron_fabric:delivery_workers"


def worker_heartbeat(name: str) -> DeliveryHeartbeat:
	"""Returns the heartbeat of the delivery worker called ``name``, publishing to Redis."""
	return DeliveryHeartbeat(lambda status: write_heartbeat(WORKERS_KEY, name, status))


def forget_worker(name: str) -> None:
	"""Drops a stopped worker's entry."""
	remove_heartbeat(WORKERS_KEY, name)


def delivery_worker_statuses() -> list[dict[str, Any]]:
	"""Returns each delivery worker's last heartbeat, totals, error and attempts, silent ones marked stale."""
	return read_heartbeats(WORKERS_KEY)


def delivery_queue_status() -> dict[str, Any]:
	"""Returns pending, due and dead deliveries (capped, see capped_count) and how long the
	oldest due one has waited.

	Every read stays in the workers' ``(status, next_attempt_at, name)`` index: the counts read
	only its entries for one status (and, for the due ones, a range of times), and the oldest
	due delivery is its first entry in that range, one row read.
	"""
	from cauldron_fabric.services.status import capped_count

	now = now_datetime()
	pending, pending_capped = capped_count(DEFAULT_TABLE, "status = %s", (PENDING,))
	dead, dead_capped = capped_count(DEFAULT_TABLE, "status = %s", (DEAD,))
	due, due_capped = capped_count(DEFAULT_TABLE, "status = %s AND next_attempt_at <= %s", (PENDING, now))
	oldest = frappe.db.sql(
		f"""SELECT next_attempt_at FROM `{DEFAULT_TABLE}` WHERE status = %s AND next_attempt_at <= %s
		ORDER BY next_attempt_at LIMIT 1""",
		(PENDING, now),
	)
	age = (now - get_datetime(oldest[0][0])).total_seconds() if oldest else 0
	return {
		"pending": pending,
		"pendingCapped": pending_capped,
		"due": due,
		"dueCapped": due_capped,
		"dead": dead,
		"deadCapped": dead_capped,
		"oldestDueSeconds": round(max(age, 0), 3),
	}
