"""Events over the API: list and read the Event Log as envelopes, requeue failed events.

``GET /api/method/cauldron_fabric.api.events.list_events?event_type=todo.*&limit=50``
"""

from __future__ import annotations

import json
from typing import Any

import frappe
from frappe import _

from cauldron_fabric.api.params import limit_param, names_param, number_param
from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.core.outbox.sql import FAILED, PENDING
from cauldron_fabric.services.relay import site_db_connector

MAX_LIMIT = 500
FIELDS = (
	"name",
	"event_id",
	"status",
	"attempts",
	"last_error",
	"topic",
	"kafka_partition",
	"kafka_offset",
	"envelope",
)


@frappe.whitelist(methods=["GET"])
def list_events(
	event_type: str | None = None,
	entity: str | None = None,
	entity_id: str | None = None,
	status: str | None = None,
	correlation_id: str | None = None,
	after: int | None = None,
	limit: int = 100,
) -> dict[str, Any]:
	"""Returns events oldest first with their delivery status; ``next`` is the cursor to pass as ``after``.

	``event_type`` accepts a trailing ``*`` (``sales_invoice.*``).
	"""
	frappe.has_permission("Event Log", "read", throw=True)
	limit = limit_param(limit, MAX_LIMIT)
	filters: dict[str, Any] = {}
	if event_type:
		filters["event_type"] = (
			("like", _like_prefix(event_type[:-1])) if event_type.endswith("*") else event_type
		)
	for field, value in (
		("entity", entity),
		("entity_id", entity_id),
		("status", status),
		("correlation_id", correlation_id),
	):
		if value:
			filters[field] = value
	cursor = number_param(after, "after") if after else 0
	if cursor:
		filters["name"] = (">", cursor)
	rows = frappe.get_list(
		"Event Log", filters=filters, fields=list(FIELDS), order_by="name asc", limit_page_length=limit
	)
	rows = _before_uncommitted(rows, cursor)
	events = [_event(row) for row in rows]
	return {"events": events, "next": rows[-1].name if len(rows) == limit else None}


def _before_uncommitted(rows: list, after: int) -> list:
	"""Returns the rows in front of the first event number drawn by a save that has not committed.

	Numbers are drawn when an event is inserted, not when its save commits: a slow save holding
	number 10 commits after a quick one holding 11. A page that gave 11 as the cursor would make
	its reader skip 10 for ever. A read that sees uncommitted rows (READ UNCOMMITTED, on a
	connection of its own) finds the numbers taken but not yet visible here.
	"""
	if not rows:
		return rows
	span = (after, rows[-1].name)
	query = "SELECT name FROM `tabEvent Log` WHERE name > %s AND name <= %s"
	visible = {row[0] for row in frappe.db.sql(query, span)}
	connection = site_db_connector()()
	try:
		with connection.cursor() as cursor:
			cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
			cursor.execute(query, span)
			taken = {row[0] for row in cursor.fetchall()}
	finally:
		connection.close()
	hidden = taken - visible
	if not hidden:
		return rows
	first = min(hidden)
	return [row for row in rows if row.name < first]


@frappe.whitelist(methods=["GET"])
def get_event(event_id: str) -> dict[str, Any]:
	"""Returns one event by its envelope id, with its delivery status."""
	frappe.has_permission("Event Log", "read", throw=True)
	rows = frappe.get_list(
		"Event Log", filters={"event_id": event_id}, fields=list(FIELDS), limit_page_length=1
	)
	if not rows:
		frappe.throw(_("No event with id {0}.").format(event_id), frappe.DoesNotExistError)
	return _event(rows[0])


@frappe.whitelist(methods=["POST"])
def requeue(event_ids: list[str] | str) -> dict[str, int]:
	"""Puts Failed events back in the outbox so the relay publishes them again."""
	require_role()
	ids = names_param(event_ids, "event_ids")
	names = frappe.get_all("Event Log", filters={"event_id": ("in", ids), "status": FAILED}, pluck="name")
	if not names:
		return {"requeued": 0}
	# Update by primary key only: a range or secondary-index update would take gap locks
	# that make every save on the site wait to append its event until this commits.
	frappe.db.sql(
		f"""UPDATE `tabEvent Log` SET status = %s, next_attempt_at = NULL, last_error = NULL
		WHERE name IN ({", ".join(["%s"] * len(names))}) AND status = %s""",
		(PENDING, *names, FAILED),
	)
	count = int(frappe.db.sql("SELECT ROW_COUNT()")[0][0])
	from cauldron_fabric.emit.recorder import wake_relays_after_commit

	wake_relays_after_commit()
	return {"requeued": count}


def _like_prefix(prefix: str) -> str:
	"""Returns a LIKE pattern for ``prefix``: its ``_``, ``%`` and ``\\`` are literal, not wildcards.

	Event types are snake case, so an unescaped ``_`` would match the dot of another type
	(``fabric_probe.*`` would list ``fabric.probe.saved``).
	"""
	return prefix.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"


def _event(row) -> dict[str, Any]:
	return {
		"seq": row.name,
		"status": row.status,
		"attempts": row.attempts,
		"lastError": row.last_error,
		"topic": row.topic,
		"partition": row.kafka_partition,
		"offset": row.kafka_offset,
		"envelope": json.loads(row.envelope),
	}
