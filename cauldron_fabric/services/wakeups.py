"""Waking this site's long-running workers (relays, delivery workers) after a commit.

One Redis message per channel per transaction, sent from a background thread (see
core.wakeup.BackgroundWakeups) so that a save never waits on Redis for it. A lost one only
delays the work to the workers' next poll, so failures are logged, never raised.
"""

from __future__ import annotations

import weakref

import frappe

from cauldron_fabric.core.wakeup import BackgroundWakeups


def _publish(channel: str) -> None:
	frappe.cache.publish(channel, "1")


background_wakeups = BackgroundWakeups(_publish)


def relay_channel() -> str:
	"""Returns the Redis channel that wakes this site's relays."""
	# Here rather than in services.relay: every save that records an event names it, and the
	# relay module (transports, Kafka client) has no business being imported for that.
	return f"cauldron_fabric:outbox:{frappe.local.site}"


def wake(channel: str) -> None:
	"""Publishes a wake-up on ``channel`` now."""
	try:
		_publish(channel)
	except Exception:
		frappe.logger("cauldron_fabric").warning(
			"could not publish the wake-up on %s", channel, exc_info=True
		)


def wake_after_commit(channel: str) -> None:
	"""Wakes ``channel`` in the background once the current transaction commits (none on rollback)."""
	pending = _pending_wakeups()
	if pending is None:
		pending = WakeupsAfterCommit()
		frappe.db.after_commit.add(pending)
		frappe.local.fabric_wakeups = weakref.ref(pending)
	pending.channels[channel] = None


class WakeupsAfterCommit:
	"""The channels one transaction wakes when it commits: a single after-commit callback.

	Only Frappe's callback list holds it; this process keeps a weak reference to add channels
	to it. Frappe drops the list on a rollback, also of a commit that a before_commit callback
	refused (after it had already dropped the after-rollback callbacks, so no callback could
	tell): the callback is then gone, the reference dead, and the next change schedules a new
	one instead of taking its wake-ups as already scheduled.
	"""

	__slots__ = ("__weakref__", "channels")

	def __init__(self):
		self.channels: dict[str, None] = {}  # an insertion-ordered set

	def __call__(self) -> None:
		for channel in self.channels:
			background_wakeups.send(channel)


def _pending_wakeups() -> WakeupsAfterCommit | None:
	reference = getattr(frappe.local, "fabric_wakeups", None)
	return reference and reference()
