"""A delivery worker's heartbeat: its totals, last error and the attempts it has under way.

The worker counts each cycle's report and the engine beats while it waits for its sending
threads, so a worker held by a handler that does not return still reports, naming the handler.
``publish`` receives the status at most once every ``every`` seconds (a write to Redis, on the
site): what the delivery hot path pays is a clock read per cycle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cauldron_fabric.core.delivery.overdue import RunningAttempts
from cauldron_fabric.core.delivery.worker import DeliveryReport

HEARTBEAT_SECONDS = 1.0


class DeliveryHeartbeat:
	"""Adds up a worker's cycles and publishes its status, at most once every ``every`` seconds."""

	def __init__(self, publish: Callable[[dict[str, Any]], None], every: float = HEARTBEAT_SECONDS):
		self.publish, self.every = publish, every
		self.totals = {"delivered": 0, "retried": 0, "dead": 0}
		self.last_error: str | None = None
		# The running engine's attempts; a worker that rebuilds its engine points this at the new one.
		self.running: RunningAttempts | None = None
		self._last_beat = float("-inf")
		self._lock = threading.Lock()

	def count(self, report: DeliveryReport) -> None:
		"""Adds a cycle's outcome; a cycle that failed sets the last error, one that ran clears it."""
		self.totals["delivered"] += report.delivered
		self.totals["retried"] += report.retrying
		self.totals["dead"] += report.dead
		self.last_error = report.error
		self.beat()

	def beat(self, force: bool = False) -> None:
		"""Publishes the status when ``every`` seconds passed since the last time (or when forced)."""
		with self._lock:
			now = time.monotonic()
			if not force and now - self._last_beat < self.every:
				return
			self._last_beat = now
		self.publish(self.status())

	def status(self) -> dict[str, Any]:
		"""Returns the totals, last error, attempts in flight and overdue attempts (longest first)."""
		in_flight, overdue = self.running.under_way() if self.running else (0, [])
		return {
			**self.totals,
			"last_error": self.last_error,
			"in_flight": in_flight,
			"overdue": [
				{
					"event": entry.event_id,
					"subscription": entry.subscription,
					"destination": entry.destination,
					"running_seconds": round(seconds, 1),
				}
				for entry, seconds in overdue
			],
		}
