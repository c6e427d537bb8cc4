"""Deleting old rows in chunks without blocking the saves that append new ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import frappe
from frappe.utils import add_days, cint, now_datetime

from cauldron_fabric.services.sitedb import affected_rows

CHUNK = 5000


def purge_expired(table: str, statuses: Sequence[str], age_column: str = "modified") -> int:
	"""Deletes the rows of ``table`` in ``statuses`` older than Fabric Settings' retention days.

	Nothing is deleted while the retention is not set (0 days).
	"""
	cutoff = retention_cutoff("retention_days")
	if cutoff is None:
		return 0
	return purge(table, statuses, age_column, cutoff)


def retention_cutoff(fieldname: str) -> dt.datetime | None:
	"""Returns the time before which rows are past a Fabric Settings number of days to keep them.

	None while it keeps everything (0 days).
	"""
	days = cint(frappe.db.get_single_value("Fabric Settings", fieldname))
	return add_days(now_datetime(), -days) if days > 0 else None


def purge(
	table: str, statuses: Sequence[str], age_column: str, cutoff: dt.datetime, chunk: int = CHUNK
) -> int:
	"""Deletes the rows of ``table`` (in ``statuses``, when given) whose ``age_column`` is before ``cutoff``.

	Selects a chunk, then deletes it by primary key and commits: a range delete would gap-lock
	the indexes and make every save that appends a row wait until it commits. Returns how many
	rows it deleted, not how many it selected: another purge (a second scheduler worker) may
	have deleted some of them first.
	"""
	deleted, since = 0, None
	while True:
		rows = frappe.db.sql(*next_chunk(table, statuses, age_column, cutoff, since, chunk))
		if rows:
			frappe.db.sql(*delete_chunk(table, [row[0] for row in rows], statuses, age_column, cutoff))
			deleted += affected_rows()
			frappe.db.commit()
			since = rows[-1][1]
		if len(rows) < chunk:
			return deleted


def delete_chunk(
	table: str, names: Sequence, statuses: Sequence[str], age_column: str, cutoff: dt.datetime
) -> tuple[str, tuple]:
	"""Returns the DELETE of a chunk's rows that still match the purge's conditions.

	The chunk was read without locks, and a row may have changed since (a dead letter's Retry
	makes a Discarded delivery Pending again, and fresh): the DELETE reads each row as last
	committed, so it tests the status and the age again. It reads the primary key only, forced:
	left to choose, MariaDB may read a short table through the age or status index instead,
	locking every row (and gap) of that range, Pending rows that relays claim included.
	"""
	status = f" AND t.status IN ({', '.join(['%s'] * len(statuses))})" if statuses else ""
	sql = f"""DELETE t FROM `{table}` t FORCE INDEX (PRIMARY)
		WHERE t.name IN ({", ".join(["%s"] * len(names))}) AND t.`{age_column}` < %s{status}"""
	return sql, (*names, cutoff, *statuses)


def next_chunk(
	table: str,
	statuses: Sequence[str],
	age_column: str,
	cutoff: dt.datetime,
	since: dt.datetime | None,
	chunk: int,
) -> tuple[str, tuple]:
	"""Returns the query for the next ``chunk`` rows to delete (name and age), oldest first.

	It reads the age column's index in order, from where the previous chunk ended (``since``):
	kept rows (Pending, Failed) and deleted ones are not read again, and the last chunk stops at
	the cutoff instead of reading every newer row in search of more.
	"""
	after = f" AND `{age_column}` >= %s" if since is not None else ""
	status = f" AND status IN ({', '.join(['%s'] * len(statuses))})" if statuses else ""
	sql = f"""SELECT name, `{age_column}` FROM `{table}`
		WHERE `{age_column}` < %s{after}{status}
		ORDER BY `{age_column}` LIMIT %s"""
	return sql, (cutoff, *([since] if since is not None else []), *statuses, chunk)
