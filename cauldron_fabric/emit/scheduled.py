"""Scheduler jobs: the relay's safety net, the ``system.status`` heartbeat, retention."""

from __future__ import annotations

import frappe

from cauldron_fabric.core.naming import SYSTEM_STATUS
from cauldron_fabric.core.outbox.statements import PUBLISHED, RECORDED
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.recorder import new_envelope, record
from cauldron_fabric.services.retention import purge_expired

SAFETY_NET_SECONDS = 45


def relay_pending_events() -> None:
	"""Publishes what the long-running relay left behind (or everything, when none runs)."""
	from cauldron_fabric.services.heartbeats import safety_net_name
	from cauldron_fabric.services.relay import run_relay_for

	if current_policy().publishing:
		run_relay_for(max_seconds=SAFETY_NET_SECONDS, stop_when_idle=True, name=safety_net_name())


def emit_heartbeat() -> None:
	"""Records a ``system.status`` event describing the site and the outbox."""
	if not (current_policy().enabled and current_policy().heartbeat):
		return
	from cauldron_fabric.services.status import site_status

	status = site_status()
	# Kept as Invalid, never failing the job, when the latest schema lacks what this version
	# reports (before the migrate that registers it, or a subject whose mode refused it).
	record([new_envelope(SYSTEM_STATUS, "Site", frappe.local.site, "status", status)], reject_invalid=False)


def purge_expired_events() -> int:
	"""Deletes Published and Recorded events older than the retention; never Pending or Failed."""
	return purge_expired("tabEvent Log", (PUBLISHED, RECORDED), age_column="creation")
