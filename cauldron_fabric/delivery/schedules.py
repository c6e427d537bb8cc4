"""Cron-style triggers defined on subscriptions: due ones become ``schedule.triggered`` events.

A scheduler job checks every minute. A due trigger records one event, like any other event
(Event Log, outbox, every subscription that wants ``schedule.*``), and queues it for the
subscription that defines the trigger whatever its patterns. Missed runs (scheduler down)
fire once, not once per missed minute; a trigger row is claimed with a conditional UPDATE, so
two schedulers never fire it twice.
"""

from __future__ import annotations

import datetime as dt

import frappe
from croniter import croniter
from frappe.utils import get_datetime, now_datetime

from cauldron_fabric.core.delivery import DeliveryRequest
from cauldron_fabric.delivery.recording import insert_deliveries
from cauldron_fabric.emit.recorder import new_envelope, record

EVENT_TYPE = "schedule.triggered"
SCHEDULE_DOCTYPE = "Event Subscription Schedule"


def invalid_cron(expression: str) -> bool:
	"""Tells whether a cron expression cannot be used (five fields, croniter's syntax, a run time).

	Well-formed is not enough: ``0 0 30 2 *`` (30 February) never runs, and croniter raises for
	it instead of returning a next time, which would fail the whole trigger job every minute.
	"""
	text = (expression or "").strip()
	if len(text.split()) != 5 or not croniter.is_valid(text):
		return True
	try:
		croniter(text, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
	except Exception:
		return True
	return False


def last_due(expression: str, since: dt.datetime, now: dt.datetime) -> dt.datetime | None:
	"""Returns the latest run time of ``expression`` after ``since`` and not after ``now``, or None."""
	following = croniter(expression, since).get_next(dt.datetime)
	if following > now:
		return None
	return croniter(expression, now + dt.timedelta(seconds=1)).get_prev(dt.datetime)


def fire_due_triggers(now: dt.datetime | None = None) -> int:
	"""Fires every due trigger of the enabled subscriptions; returns how many fired."""
	now = now or now_datetime()
	rows = frappe.db.sql(
		f"""SELECT s.name, s.parent, s.cron, s.label, s.last_triggered_at, s.creation
		FROM `tab{SCHEDULE_DOCTYPE}` s JOIN `tabEvent Subscription` p ON p.name = s.parent
		WHERE s.parenttype = 'Event Subscription' AND p.enabled = 1""",
		as_dict=True,
	)
	fired = 0
	for row in rows:
		if invalid_cron(row.cron):
			continue
		due = last_due(row.cron.strip(), get_datetime(row.last_triggered_at or row.creation), now)
		if due is not None and _claim(row, due):
			fire_trigger(row.parent, row.cron.strip(), row.label, due)
			frappe.db.commit()
			fired += 1
	return fired


def _claim(row, due: dt.datetime) -> bool:
	"""Marks the trigger as fired for ``due`` unless another scheduler did first."""
	previous = row.last_triggered_at
	frappe.db.sql(
		f"""UPDATE `tab{SCHEDULE_DOCTYPE}` SET last_triggered_at = %s
		WHERE name = %s AND {"last_triggered_at = %s" if previous else "last_triggered_at IS NULL"}""",
		(due, row.name, previous) if previous else (due, row.name),
	)
	return bool(frappe.db.sql("SELECT ROW_COUNT()")[0][0])


def fire_trigger(subscription: str, cron: str, label: str | None, due: dt.datetime) -> str:
	"""Records the ``schedule.triggered`` event and queues it for ``subscription``; returns its id."""
	payload = {
		"subscription": subscription,
		"schedule": label or cron,
		"cron": cron,
		"scheduledFor": due.isoformat(),
	}
	envelope = new_envelope(EVENT_TYPE, "Event Subscription", subscription, "triggered", payload)
	record([envelope])
	insert_deliveries([DeliveryRequest(subscription, envelope)])
	return envelope.id
