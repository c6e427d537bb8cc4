"""What the subscription form shows: recent deliveries, failures and latency."""

from __future__ import annotations

import math
from typing import Any

import frappe
from frappe.utils import add_to_date, now_datetime

from cauldron_fabric.core.delivery import DELIVERED

WINDOW_HOURS = 24
RECENT_ROWS = 10
LATENCY_SAMPLE = 2000


def subscription_stats(subscription: str, hours: int = WINDOW_HOURS) -> dict[str, Any]:
	"""Returns counts per status, latency percentiles, the latest deliveries and failures of a window."""
	since = add_to_date(now_datetime(), hours=-hours)
	where = "subscription = %s AND creation >= %s"
	counts = dict(
		frappe.db.sql(
			f"SELECT status, COUNT(*) FROM `tabEvent Delivery` WHERE {where} GROUP BY status",
			(subscription, since),
		)
	)
	latencies = sorted(
		float(v)
		for v in frappe.db.sql_list(
			f"""SELECT last_latency_ms FROM `tabEvent Delivery` WHERE {where} AND status = %s
			AND last_latency_ms IS NOT NULL ORDER BY creation DESC LIMIT %s""",
			(subscription, since, DELIVERED, LATENCY_SAMPLE),
		)
	)
	fields = "name, event_type, status, attempts, last_status_code, last_latency_ms, last_error, creation, modified"
	recent = frappe.db.sql(
		f"SELECT {fields} FROM `tabEvent Delivery` WHERE {where} ORDER BY creation DESC LIMIT %s",
		(subscription, since, RECENT_ROWS),
		as_dict=True,
	)
	failures = frappe.db.sql(
		f"""SELECT {fields} FROM `tabEvent Delivery` WHERE {where} AND last_error IS NOT NULL
		ORDER BY creation DESC LIMIT %s""",
		(subscription, since, RECENT_ROWS),
		as_dict=True,
	)
	return {
		"hours": hours,
		"counts": {status: int(count) for status, count in counts.items()},
		"latencyMs": {
			"p50": _percentile(latencies, 0.5),
			"p95": _percentile(latencies, 0.95),
			"max": latencies[-1] if latencies else None,
		},
		"recent": recent,
		"failures": failures,
	}


def _percentile(values: list[float], fraction: float) -> float | None:
	"""Returns the nearest-rank percentile of sorted ``values``: the ceil(fraction * n)-th value.

	Indexing at int(fraction * n) is one rank too high whenever fraction * n is whole: the
	"p95" of 20 latencies was their maximum, the "median" of two the slower one. The product is
	rounded first so that binary floating point (0.95 * 20 = 18.999…) cannot move the rank.
	"""
	if not values:
		return None
	rank = max(1, math.ceil(round(fraction * len(values), 9)))
	return round(values[min(len(values), rank) - 1], 1)
