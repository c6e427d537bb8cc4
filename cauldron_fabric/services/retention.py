"""Deleting old rows in chunks without blocking the saves that append new ones."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import frappe
from frappe.utils import add_days, cint, now_datetime

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
	the indexes and make every save that appends a row wait until it commits.
	"""
	deleted, since = 0, None
	while True:
		rows = frappe.db.sql(*next_chunk(table, statuses, age_column, cutoff, since, chunk))
		if rows:
			names = [row[0] for row in rows]
			frappe.db.sql(f"DELETE FROM `{table}` WHERE name IN ({', '.join(['%s'] * len(names))})", names)
			frappe.db.commit()
			since = rows[-1][1]
		deleted += len(rows)
		if len(rows) < chunk:
			return deleted


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
