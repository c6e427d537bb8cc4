"""Writing events into the outbox (the Event Log) inside the caller's transaction.

The row commits or rolls back with the change that caused it, so nothing is published for a
rolled-back change and nothing committed is lost. After the commit, one Redis message wakes
the relays; if it is lost they still find the row on their next poll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import frappe
from frappe.utils import now_datetime

from cauldron_fabric.core.envelope import Envelope, EventData, EventMetadata, new_event_id, utc_now_iso
from cauldron_fabric.core.outbox.statements import build_append
from cauldron_fabric.core.ports import OutboxAppend
from cauldron_fabric.delivery.recording import enqueue_deliveries
from cauldron_fabric.emit.context import causation_id, correlation_id
from cauldron_fabric.emit.held import end_waiting
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.writes import (
	PACKET_HEADROOM,
	escapes_in_literals,
	statement_limit,
	write_in_fitting_statements,
)
from cauldron_fabric.registry.recording import check_events, describe_violations
from cauldron_fabric.services.wakeups import relay_channel, wake_after_commit

# Where record() keeps the events recorded inside recorded_together(), and how many it keeps
# at most before writing them.
TOGETHER = "fabric_recorded_together"
WRITTEN_TOGETHER = 500


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


def record(
	envelopes: Sequence[Envelope], reject_invalid: bool = True, *, refuse_invalid: bool = False
) -> None:
	"""Appends events to the outbox in the current transaction; publishing happens after commit.

	Without ``reject_invalid`` an event its schema refuses is kept as Invalid whatever Fabric
	Settings say, for events the fabric adds to a save the user did not ask it to judge; with
	``refuse_invalid`` it is refused whatever they say (events published through the API).
	"""
	end_waiting()  # documents inserted in SQL, waiting for their rows, come first
	if not envelopes:
		return
	policy = current_policy()
	checked = check_events(envelopes, reject_invalid, refuse_invalid=refuse_invalid)
	entries = [
		OutboxAppend(
			envelope,
			pending=policy.publishing,
			invalid=bool(violations),
			problem=describe_violations(envelope, violations) if violations else None,
		)
		for envelope, violations in checked
	]
	together = getattr(frappe.local, TOGETHER, None)
	if together is None:
		_write(entries)
		return
	together.extend(entries)
	if len(together) >= WRITTEN_TOGETHER:
		_write(together)
		together.clear()


@contextmanager
def recorded_together():
	"""Writes the events recorded inside (each checked against its schema as it is recorded)
	at the end, or every ``WRITTEN_TOGETHER`` of them: one outbox INSERT (or as many as
	``max_allowed_packet`` needs) and one routing to subscriptions for them all, not one each.
	For writes of many documents at once: a raw SQL statement over a table paid a database
	round trip per event. Inside another, it is that one."""
	if getattr(frappe.local, TOGETHER, None) is not None:
		yield
		return
	together: list[OutboxAppend] = []
	setattr(frappe.local, TOGETHER, together)
	try:
		yield
	except frappe.QueryDeadlockError:
		# The database rolled the transaction back, and with it the changes these events tell.
		together.clear()
		raise
	finally:
		setattr(frappe.local, TOGETHER, None)
		# Also when anything else raised inside: what was recorded before is written, as it
		# would have been at once (the caller may catch the error and commit).
		if together:
			_write(together)


def _write(entries: Sequence[OutboxAppend]) -> None:
	"""Writes checked events to the outbox, routes them to subscriptions and, when they are to
	be published, wakes the relays after the commit."""
	written = append_to_outbox(entries)
	enqueue_deliveries([entry.envelope for entry in written if not entry.invalid])
	if current_policy().publishing:
		wake_relays_after_commit()


def append_to_outbox(entries: Sequence[OutboxAppend]) -> list[OutboxAppend]:
	"""Writes ``entries`` to the outbox in the open transaction; returns them as written.

	One INSERT holds them all unless it is more than the database takes in one statement
	(``max_allowed_packet``): the server then refuses it and drops Frappe's connection, which
	fails the user's save. So a large group is written event by event, and an event too large
	even alone is kept as Invalid without its payload, saying why.
	"""
	return write_in_fitting_statements(entries, _append_statement, _without_payload)


def _append_statement(entries: Sequence[OutboxAppend]) -> tuple[str, list[Any]]:
	return build_append(entries, actor=acting_user(), now=now_datetime(), escapes=escapes_in_literals())


def _without_payload(entry: OutboxAppend, size: int) -> OutboxAppend:
	"""Returns ``entry`` as an Invalid event with an empty payload, for an event of ``size``
	bytes that the database cannot take."""
	envelope = entry.envelope
	data = envelope.data
	problem = (
		f"This event took {size} bytes, more than the database takes in one statement "
		f"(max_allowed_packet, {statement_limit() + PACKET_HEADROOM} bytes): it is kept without its "
		"payload and never published. Raise max_allowed_packet on the database server to record "
		"events this large whole."
	)
	kept = replace(envelope, data=EventData(data.entity, data.entity_id, data.action, {}), data_schema=None)
	return OutboxAppend(kept, pending=entry.pending, invalid=True, problem=problem)


def wake_relays_after_commit() -> None:
	"""Schedules one relay wake-up for when the current transaction commits."""
	wake_after_commit(relay_channel())
