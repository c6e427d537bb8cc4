"""Events over the API: list and read the Event Log as envelopes, requeue failed events.

``GET /api/method/cauldron_fabric.api.events.list_events?event_type=todo.*&limit=50``
"""

from __future__ import annotations

import json
import threading
from typing import Any

import frappe
import pymysql
from frappe import _

from cauldron_fabric.api.params import limit_param, names_param, number_param, required, text_param
from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.core.outbox.statements import FAILED, PENDING
from cauldron_fabric.services.relay import site_db_connector
from cauldron_fabric.services.sitedb import affected_rows

MAX_LIMIT = 500
# Event ids one requeue takes: each goes into one query and one UPDATE (as many as a bulk dead
# letter call takes).
MAX_REQUEUE = 5000
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
	event_type = text_param(event_type, "event_type")
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
		if text_param(value, field):
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
	connection of its own) finds the numbers taken but not yet visible here. Counting first keeps
	the usual case (nothing in flight) to two index-only reads, however wide a filtered page's
	range of numbers is.

	A count alone can be fooled: a delete in flight (the daily purge) already hides its rows
	from the uncommitted read, so one row being deleted and one save in flight leave both counts
	equal. The sum of the numbers tells them apart: what the purge deletes is old, what a save
	draws is new, so equal counts mean equal sums only when nothing is in flight.
	"""
	if not rows:
		return rows
	span = (after, rows[-1].name)
	totals = "SELECT COUNT(*), COALESCE(SUM(name), 0) FROM `tabEvent Log` WHERE name > %s AND name <= %s"
	visible_totals = [int(value) for value in frappe.db.sql(totals, span)[0]]
	taken_totals = [int(value) for value in _read_uncommitted(totals, span)[0]]
	if taken_totals == visible_totals:
		return rows
	query = "SELECT name FROM `tabEvent Log` WHERE name > %s AND name <= %s"
	visible = {row[0] for row in frappe.db.sql(query, span)}
	hidden = {row[0] for row in _read_uncommitted(query, span)} - visible
	if not hidden:
		return rows
	first = min(hidden)
	return [row for row in rows if row.name < first]


_readers = threading.local()


def _read_uncommitted(query: str, params: tuple) -> tuple:
	"""Runs a read that sees uncommitted rows, on this thread's own connection to the site's database.

	The connection is kept for the next request (opening one costs more than the read); a lost
	one is opened again once.
	"""
	try:
		return _run(_reader(), query, params)
	except pymysql.MySQLError:
		# Lost (OperationalError) or left unusable (InterfaceError after a half-read reply):
		# either way a new connection, once.
		stale = _readers.__dict__.get("by_site", {}).pop(frappe.local.site, None)
		if stale is not None:
			try:
				stale.close()
			except Exception:
				pass  # already closed
		return _run(_reader(), query, params)


def _reader():
	readers = _readers.__dict__.setdefault("by_site", {})
	connection = readers.get(frappe.local.site)
	if connection is None:
		connection = site_db_connector()()
		connection.autocommit(True)
		_run(connection, "SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED", ())
		readers[frappe.local.site] = connection
	return connection


def _run(connection, query: str, params: tuple) -> tuple:
	with connection.cursor() as cursor:
		cursor.execute(query, params)
		return cursor.fetchall()


@frappe.whitelist(methods=["GET"])
def get_event(event_id: str | None = None) -> dict[str, Any]:
	"""Returns one event by its envelope id, with its delivery status."""
	frappe.has_permission("Event Log", "read", throw=True)
	text_param(required(event_id, "event_id"), "event_id")
	rows = frappe.get_list(
		"Event Log", filters={"event_id": event_id}, fields=list(FIELDS), limit_page_length=1
	)
	if not rows:
		frappe.throw(_("No event with id {0}.").format(event_id), frappe.DoesNotExistError)
	return _event(rows[0])


@frappe.whitelist(methods=["POST"])
def requeue(event_ids: list[str] | str | None = None) -> dict[str, int]:
	"""Puts Failed events back in the outbox so the relay publishes them again."""
	require_role()
	ids = names_param(required(event_ids, "event_ids"), "event_ids")
	if len(ids) > MAX_REQUEUE:
		frappe.throw(
			_(
				"event_ids lists {0} events; at most {1} are requeued in one call. Send them in parts of {1} or fewer."
			).format(len(ids), MAX_REQUEUE),
			frappe.ValidationError,
		)
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
	count = affected_rows()
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
