"""Cron-style triggers defined on subscriptions: due ones become ``schedule.triggered`` events.

A scheduler job checks every minute. A due trigger records one event, like any other event
(Event Log, outbox, every subscription that wants ``schedule.*``), and queues it for the
subscription that defines the trigger whatever its patterns. Missed runs (scheduler down)
fire once, not once per missed minute; a trigger row is claimed with a conditional UPDATE, so
two schedulers never fire it twice.

Cron expressions follow the clock of the site's time zone (System Settings), but run times are
computed as instants, so a daylight-saving change neither skips nor repeats runs. A clock time
the change skips runs as much later as the clock jumps (02:30 becomes 03:30); in the hour shown
twice, an expression whose hour field is ``*`` runs in both passes and one naming the hour runs
once, in the first, as cron does. The last run is kept in UTC (``last_run_utc``), which is never
ambiguous; ``last_triggered_at`` shows it on the site's clock.
"""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import frappe
from croniter import croniter
from frappe.utils import get_datetime, get_system_timezone

from cauldron_fabric.core.delivery import DeliveryRequest
from cauldron_fabric.delivery.recording import insert_deliveries
from cauldron_fabric.emit.recorder import new_envelope, record
from cauldron_fabric.services.sitedb import affected_rows

EVENT_TYPE = "schedule.triggered"
SCHEDULE_DOCTYPE = "Event Subscription Schedule"
UTC = dt.timezone.utc
SHIFT = dt.timedelta(hours=3)  # more than any daylight-saving change
# croniter's random field: R, R(0-29), R/10, R(0-29)/10 (any case).
RANDOM_FIELD = re.compile(r"^r(\(\d+-\d+\))?(/\d+)?\Z", re.IGNORECASE)


def invalid_cron(expression: str) -> bool:
	"""Tells whether a cron expression cannot be used (five fields, croniter's syntax, a run time).

	Well-formed is not enough: ``0 0 30 2 *`` (30 February) never runs, and croniter raises for
	it instead of returning a next time, which would fail the whole trigger job every minute.
	Nor is croniter's ``R``: it draws a new value every time the job looks, so the run time
	wanders, and ``0 0 R * 1#2`` finds no run at all for most draws.
	"""
	text = (expression or "").strip()
	fields = text.split()
	if len(fields) != 5 or any(RANDOM_FIELD.match(f) for f in fields) or not croniter.is_valid(text):
		return True
	try:
		croniter(text, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
	except Exception:
		return True
	return False


def last_due(expression: str, since: dt.datetime, now: dt.datetime, zone: dt.tzinfo) -> dt.datetime | None:
	"""Returns the latest run of ``expression`` after ``since`` and not after ``now``, or None.

	``since`` and ``now`` are aware; the run is returned in UTC.
	"""
	latest = latest_run(expression, now, zone)
	return latest if latest > since else None


def latest_run(expression: str, now: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
	"""Returns the latest run of ``expression`` on ``zone``'s clock not after ``now``, in UTC."""
	wall = now.astimezone(zone).replace(tzinfo=None)
	# Near a change, a run shown later on the clock than now may already be past (02:50 of the
	# first pass, seen at 02:10 of the second): the clock times around now are all looked at.
	near = (now - SHIFT).astimezone(zone).utcoffset() != (now + SHIFT).astimezone(zone).utcoffset()
	runs = croniter(expression, wall + (SHIFT if near else dt.timedelta(seconds=1)))
	both_passes = expression.split()[1].startswith("*")
	latest = None
	while True:
		run = runs.get_prev(dt.datetime)
		for instant in instants(run, zone, both_passes):
			if instant <= now and (latest is None or instant > latest):
				latest = instant
		if latest is not None and (not near or run < wall - SHIFT):
			return latest


def instants(wall: dt.datetime, zone: dt.tzinfo, both_passes: bool) -> list[dt.datetime]:
	"""Returns when a clock time of ``zone`` happens, in UTC.

	Once, usually. A time the clock skips happens as much later as it jumps (PEP 495's
	``fold=0``); a time shown twice happens in both passes only with ``both_passes``.
	"""
	first, second = wall.replace(tzinfo=zone), wall.replace(tzinfo=zone, fold=1)
	if both_passes and second.utcoffset() < first.utcoffset():
		return [first.astimezone(UTC), second.astimezone(UTC)]
	return [first.astimezone(UTC)]


def utc_run_times_stored() -> bool:
	"""Tells whether the schedules' table has ``last_run_utc``: an upgrade's new code runs (the
	scheduler, saves) before the migrate that adds it."""
	return "last_run_utc" in frappe.db.get_table_columns(SCHEDULE_DOCTYPE)


def fire_due_triggers(now: dt.datetime | None = None) -> int:
	"""Fires every due trigger of the enabled subscriptions; returns how many fired.

	``now`` defaults to the current time; a naive ``now`` is a time on the site's clock.
	"""
	if not utc_run_times_stored():
		# Nothing fires until then, and the runs missed meanwhile fire once after the migrate.
		return 0
	zone = ZoneInfo(get_system_timezone())
	now = on_clock(now, zone) if now else dt.datetime.now(UTC)
	rows = frappe.db.sql(
		f"""SELECT s.name, s.parent, s.cron, s.label, s.last_run_utc, s.last_triggered_at, s.creation
		FROM `tab{SCHEDULE_DOCTYPE}` s JOIN `tabEvent Subscription` p ON p.name = s.parent
		WHERE s.parenttype = 'Event Subscription' AND p.enabled = 1""",
		as_dict=True,
	)
	fired = 0
	for row in rows:
		if invalid_cron(row.cron):
			continue
		due = last_due(row.cron.strip(), last_run(row, zone), now, zone)
		if due is not None and _claim(row, due, zone):
			fire_trigger(row.parent, row.cron.strip(), row.label, due.astimezone(zone))
			frappe.db.commit()
			fired += 1
	return fired


def on_clock(value: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
	"""Returns ``value`` aware: a naive value is a time on ``zone``'s clock (Frappe's datetimes)."""
	return value if value.tzinfo else value.replace(tzinfo=zone)


def last_run(row, zone: dt.tzinfo) -> dt.datetime:
	"""Returns when the trigger last fired (or was created), as an aware instant."""
	if row.last_run_utc:
		return get_datetime(row.last_run_utc).replace(tzinfo=UTC)
	# Fired before the UTC time was kept: its clock time, taken in the first pass if ambiguous.
	return on_clock(get_datetime(row.last_triggered_at or row.creation), zone)


def _claim(row, due: dt.datetime, zone: dt.tzinfo) -> bool:
	"""Marks the trigger as fired for ``due`` unless another scheduler did first."""
	previous = row.last_run_utc
	frappe.db.sql(
		f"""UPDATE `tab{SCHEDULE_DOCTYPE}` SET last_run_utc = %s, last_triggered_at = %s
		WHERE name = %s AND {"last_run_utc = %s" if previous else "last_run_utc IS NULL"}""",
		(
			due.astimezone(UTC).replace(tzinfo=None),
			due.astimezone(zone).replace(tzinfo=None),
			row.name,
			*([previous] if previous else []),
		),
	)
	return bool(affected_rows())


def fire_trigger(subscription: str, cron: str, label: str | None, due: dt.datetime) -> str:
	"""Records the ``schedule.triggered`` event and queues it for ``subscription``; returns its id.

	``scheduledFor`` is the run time on the site's clock with its UTC offset, which tells the
	two passes of a repeated hour apart.
	"""
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
