"""Deleting old rows in chunks without blocking the saves that append new ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import frappe
from frappe.utils import add_days, cint, now_datetime

CHUNK = 5000


def purge_expired(table: str, statuses: Sequence[str], age_column: str = "modified") -> int:
	"""Deletes the rows of ``table`` in ``statuses`` older than Fabric Settings' retention days.

	Nothing is deleted while the retention is not set (0 days).
	"""
	days = cint(frappe.db.get_single_value("Fabric Settings", "retention_days"))
	if days <= 0:
		return 0
	cutoff = add_days(now_datetime(), -days)
	placeholders = ", ".join(["%s"] * len(statuses))
	return purge(table, f"status IN ({placeholders}) AND `{age_column}` < %s", (*statuses, cutoff))


def purge(table: str, where: str, params: Sequence[Any], chunk: int = CHUNK) -> int:
	"""Deletes the rows of ``table`` matching ``where`` (SQL, ``%s`` params), committing per chunk.

	Selects, then deletes by primary key: a range delete would gap-lock the indexes and make
	every save that appends a row wait until it commits.
	"""
	deleted = 0
	while True:
		names = frappe.db.sql_list(
			f"SELECT name FROM `{table}` WHERE {where} ORDER BY name LIMIT %s", (*params, chunk)
		)
		if names:
			frappe.db.sql(f"DELETE FROM `{table}` WHERE name IN ({', '.join(['%s'] * len(names))})", names)
			frappe.db.commit()
		deleted += len(names)
		if len(names) < chunk:
			return deleted
