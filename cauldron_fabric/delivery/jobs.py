"""Scheduler jobs of deliveries: the workers' safety net, cron triggers, retention."""

from __future__ import annotations

import frappe

from cauldron_fabric.core.delivery import DELIVERED, DISCARDED
from cauldron_fabric.services.retention import purge_expired

SAFETY_NET_SECONDS = 45


def deliver_due_deliveries() -> None:
	"""Delivers what no long-running worker took (or everything, when none runs); files dead letters."""
	from cauldron_fabric.delivery.dead_letters import record_dead_letters
	from cauldron_fabric.delivery.status import worker_heartbeat
	from cauldron_fabric.delivery.worker import has_due_deliveries, run_delivery_worker
	from cauldron_fabric.services.heartbeats import safety_net_name

	if not frappe.db.table_exists("Event Delivery"):
		return
	record_dead_letters()
	if has_due_deliveries():
		run_delivery_worker(max_seconds=SAFETY_NET_SECONDS, stop_when_idle=True, name=safety_net_name())
	else:
		worker_heartbeat(safety_net_name()).beat(force=True)  # a run with nothing to do: alive


def fire_subscription_triggers() -> None:
	"""Fires the due cron-style triggers of subscriptions."""
	from cauldron_fabric.delivery.schedules import fire_due_triggers

	fire_due_triggers()


def purge_settled_deliveries() -> int:
	"""Deletes Delivered and Discarded deliveries older than the event retention; never Pending or Dead."""
	return purge_expired("tabEvent Delivery", (DELIVERED, DISCARDED))


def purge_resolved_dead_letters() -> int:
	"""Deletes Retried and Discarded dead letters resolved before the event retention; open ones stay."""
	return purge_expired("tabDead Letter", ("Retried", "Discarded"))
