"""Writing events into the outbox (the Event Log) inside the caller's transaction.

The row commits or rolls back with the change that caused it, so nothing is published for a
rolled-back change and nothing committed is lost. After the commit, one Redis message wakes
the relays; if it is lost they still find the row on their next poll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import frappe
from frappe.utils import now_datetime

from cauldron_fabric.core.envelope import Envelope, EventData, EventMetadata, new_event_id, utc_now_iso
from cauldron_fabric.core.outbox.sql import build_append
from cauldron_fabric.core.ports import OutboxAppend
from cauldron_fabric.delivery.recording import enqueue_deliveries
from cauldron_fabric.emit.context import causation_id, correlation_id
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.writes import escapes_in_literals, execute_in_transaction
from cauldron_fabric.registry.recording import check_events, describe_violations
from cauldron_fabric.services.wakeups import relay_channel, wake_after_commit


def acting_user() -> str:
	"""Returns the user on whose behalf the current code runs."""
	session = getattr(frappe.local, "session", None)
	return (session and session.get("user")) or "Administrator"


def new_envelope(
	event_type: str,
	entity: str,
	entity_id: str,
	action: str,
	payload: Mapping[str, Any],
	user: str | None = None,
) -> Envelope:
	"""Builds an envelope for the current site and conversation, by ``user`` or the session's user."""
	return Envelope(
		id=new_event_id(),
		type=event_type,
		source=current_policy().source,
		time=utc_now_iso(),
		data=EventData(entity, str(entity_id), action, payload),
		metadata=EventMetadata(correlation_id(), causation_id(), user or acting_user(), frappe.local.site),
	)


def record(envelopes: Sequence[Envelope], reject_invalid: bool = True) -> None:
	"""Appends events to the outbox in the current transaction; publishing happens after commit.

	Without ``reject_invalid`` an event its schema refuses is kept as Invalid whatever Fabric
	Settings say, for events the fabric adds to a save the user did not ask it to judge.
	"""
	if not envelopes:
		return
	policy = current_policy()
	checked = check_events(envelopes, reject_invalid)
	entries = [
		OutboxAppend(
			envelope,
			pending=policy.publishing,
			invalid=bool(violations),
			problem=describe_violations(envelope, violations) if violations else None,
		)
		for envelope, violations in checked
	]
	sql, params = build_append(
		entries, actor=acting_user(), now=now_datetime(), escapes=escapes_in_literals()
	)
	execute_in_transaction(sql, params)
	enqueue_deliveries([envelope for envelope, violations in checked if not violations])
	if policy.publishing:
		wake_relays_after_commit()


def wake_relays_after_commit() -> None:
	"""Schedules one relay wake-up for when the current transaction commits."""
	wake_after_commit(relay_channel())
