"""Waking this site's long-running workers (relays, delivery workers) after a commit.

One Redis message per channel per transaction, sent from a background thread (see
core.wakeup.BackgroundWakeups) so that a save never waits on Redis for it. A lost one only
delays the work to the workers' next poll, so failures are logged, never raised.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.core.wakeup import BackgroundWakeups
from cauldron_fabric.emit.held import hold_until_commit, release

# frappe.local's name for the channels the open transaction wakes when it commits.
WAKEUPS = "fabric_wakeups"


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
	"""Wakes ``channel`` in the background once the current transaction commits (none on rollback).

	One after-commit callback per transaction sends them all (emit.held): a rollback, also of a
	commit that a before_commit callback refused, drops it with the channels it held.
	"""
	hold_until_commit(WAKEUPS, _send_wakeups, after_commit=True)[channel] = None


def _send_wakeups() -> None:
	for channel in release(WAKEUPS):
		background_wakeups.send(channel)
