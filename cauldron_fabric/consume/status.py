"""What consumers report: heartbeats with processed/failed counts and lag per partition, in Redis.

Every consumer process writes its status under its name (``host:pid``) every few seconds; the
API reads them all, and asks the broker for a group's committed lag on demand.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

import frappe
from frappe.utils import now_datetime

from cauldron_fabric.core.consumer.runtime import Consumer
from cauldron_fabric.services.heartbeats import process_name, read_heartbeats

STATUS_KEY = "cauldron_fabric:consumers"
REPORT_SECONDS = 3.0


class ConsumerReporter:
	"""Writes one consumer's status to Redis at most every ``REPORT_SECONDS`` (and when asked)."""

	def __init__(self, group: str, broker: str, topics: list[str]):
		self.name, self.group, self.broker, self.topics = process_name(), group, broker, topics
		self.started = now_datetime().isoformat()
		self._last = 0.0

	def __call__(self, consumer: Consumer, force: bool = False) -> None:
		if not force and time.monotonic() - self._last < REPORT_SECONDS:
			return
		self._last = time.monotonic()
		try:
			frappe.cache.hset(STATUS_KEY, self.name, json.dumps(self.status(consumer)))
		except Exception:
			frappe.logger("cauldron_fabric").warning("could not report consumer status", exc_info=True)

	def status(self, consumer: Consumer) -> dict[str, Any]:
		"""Returns the status: totals, per-partition counts and lag, heartbeat."""
		counts = consumer.stats.per_partition()
		partitions = []
		for lag in consumer.source.lag():
			key = (lag.topic, lag.partition)
			partitions.append({**asdict(lag), **asdict(counts.pop(key))} if key in counts else asdict(lag))
		partitions += [{"topic": t, "partition": p, **asdict(c)} for (t, p), c in counts.items()]
		return {
			"name": self.name,
			"group": self.group,
			"broker": self.broker,
			"topics": self.topics,
			"started": self.started,
			"heartbeat": now_datetime().isoformat(),
			"totals": asdict(consumer.stats.totals()),
			"partitions": partitions,
		}

	def remove(self) -> None:
		"""Drops this consumer's status when it stops."""
		try:
			frappe.cache.hdel(STATUS_KEY, self.name)
		except Exception:
			pass


def consumer_statuses(group: str | None = None) -> list[dict[str, Any]]:
	"""Returns every running consumer's last status (optionally of one group), marking silent ones.

	Silent for a minute a consumer is stale; silent for an hour it is forgotten, since a killed
	process never removes its own entry (services/heartbeats.py, as for relays).
	"""
	statuses = [s for s in read_heartbeats(STATUS_KEY) if not group or s.get("group") == group]
	return sorted(statuses, key=lambda s: (s["group"], s["name"]))
