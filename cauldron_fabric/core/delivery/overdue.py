"""Attempts running longer than any attempt should: seen and logged, never stopped.

A webhook attempt ends at its timeout and a broker publish at its acknowledgement timeout. An
in-app handler runs on a sending thread, in its own database transaction committed when it
returns, and nothing can stop a Python thread from outside: killing it would leave its
transaction, its locks and whatever else it had started half done. So a handler has no timeout.
Instead the engine logs a warning for each attempt still running ``overdue_after`` seconds after
it started (again each time as long passes) and one when it ends, so an operator sees which
handler holds the worker: the batch it belongs to is settled only when it returns, and a claim
idle past ``store_sql.idle_claim_limit`` is freed and its deliveries are attempted again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# The longest a webhook attempt may wait (WebhookTarget.validate), which the claim limit assumes.
LONGEST_ATTEMPT_SECONDS = 300
CHECK_SECONDS = 5.0  # how often the waiting worker looks for overdue attempts, at most


@dataclass(frozen=True, slots=True, eq=False)
class Running:
	"""One attempt under way: which delivery, where to, since when (``time.monotonic``) and after
	how many seconds it is overdue."""

	subscription: str
	destination: str
	event_id: str
	started: float
	overdue_after: float


class RunningAttempts:
	"""The attempts under way on the sending threads, and a warning for each overdue one (thread-safe).

	``overdue_after`` is for attempts without a timeout of their own (handlers); the others end by
	their timeout and are overdue only past LONGEST_ATTEMPT_SECONDS, whatever handlers are allowed.
	"""

	def __init__(self, overdue_after: float, log: logging.Logger):
		self.overdue_after, self.log = overdue_after, log
		self.check_seconds = max(0.05, min(CHECK_SECONDS, overdue_after / 2))
		self._warn_at: dict[Running, float] = {}
		self._lock = threading.Lock()

	@contextlib.contextmanager
	def tracking(self, attempts: Sequence[tuple[str, str, str]], timed: bool = False) -> Iterator[None]:
		"""Counts the attempts (subscription, destination, event id) as running inside it; ``timed``
		when they end by a timeout of their own."""
		now = time.monotonic()
		after = LONGEST_ATTEMPT_SECONDS if timed else self.overdue_after
		entries = [Running(*attempt, now, after) for attempt in attempts]
		with self._lock:
			self._warn_at.update((entry, now + after) for entry in entries)
		try:
			yield
		finally:
			with self._lock:  # a warning moved its entry's next warning on
				warned = [e for e in entries if self._warn_at.pop(e) > e.started + e.overdue_after]
			for entry in warned:
				self.log.warning(
					"Delivery of event %s to subscription %r (%s) finished after %.1f s.",
					entry.event_id, entry.subscription, entry.destination, time.monotonic() - entry.started,
				)  # fmt: skip

	def under_way(self) -> tuple[int, list[tuple[Running, float]]]:
		"""Returns how many attempts are running and each overdue one with its seconds so far."""
		now = time.monotonic()
		with self._lock:
			entries = list(self._warn_at)
		overdue = [(e, now - e.started) for e in entries if now - e.started >= e.overdue_after]
		return len(entries), sorted(overdue, key=lambda item: -item[1])

	def warn_overdue(self) -> None:
		"""Logs a warning for each overdue attempt not warned about in its last ``overdue_after``."""
		now = time.monotonic()
		with self._lock:
			due = [e for e, at in self._warn_at.items() if at <= now]
			for entry in due:
				self._warn_at[entry] = now + entry.overdue_after
		for entry in due:
			self.log.warning(
				"Delivery of event %s to subscription %r (%s) has been running for %.1f s, longer than "
				"any attempt should take (%g s). It is not stopped: a handler cannot be stopped safely, "
				"and its batch is settled only when it returns. Make the handler bound its own waits "
				"(timeouts on its calls) or hand long work to a background job.",
				entry.event_id, entry.subscription, entry.destination, now - entry.started, entry.overdue_after,
			)  # fmt: skip
