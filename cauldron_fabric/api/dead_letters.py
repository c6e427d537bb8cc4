"""Dead letters in bulk: retry or discard the selected ones, or retry all that match filters.

Each letter goes through its own Retry or Discard (which check the role again), so deliveries
and consumers' letters alike are put back in play by their source; one letter that cannot be
retried is reported and does not stop the others.
"""

from __future__ import annotations

from typing import Any

import frappe

from cauldron_fabric.api.params import json_param, names_param, number_param, required
from cauldron_fabric.api.permissions import require_role

MAX_MATCHING = 5000


@frappe.whitelist(methods=["POST"])
def retry(names: list[str] | str | None = None) -> dict[str, Any]:
	"""Retries the named dead letters; returns how many were retried and why others were not."""
	require_role()
	return _each(names_param(required(names, "names"), "names"), lambda doc: doc.retry())


@frappe.whitelist(methods=["POST"])
def discard(names: list[str] | str | None = None, note: str | None = None) -> dict[str, Any]:
	"""Discards the named dead letters, keeping them as a record."""
	require_role()
	return _each(names_param(required(names, "names"), "names"), lambda doc: doc.discard(note))


@frappe.whitelist(methods=["POST"])
def retry_matching(filters: dict | list | str | None = None, limit: int = MAX_MATCHING) -> dict[str, Any]:
	"""Retries every Dead letter matching ``filters`` (a Dead Letter list filter), oldest first."""
	require_role()
	conditions = json_param(filters, "filters") if isinstance(filters, str) and filters.strip() else filters
	# Only dead letters can be retried, whatever status the list showed.
	if isinstance(conditions, dict):
		conditions = {**{k: v for k, v in conditions.items() if k != "status"}, "status": "Dead"}
	else:
		conditions = [*(c for c in conditions or [] if _field(c) != "status"), ["status", "=", "Dead"]]
	limit = min(max(number_param(limit, "limit"), 1), MAX_MATCHING)
	names = frappe.get_list(
		"Dead Letter",
		filters=conditions,
		pluck="name",
		order_by="creation asc",
		limit_page_length=limit,
	)
	return _each(names, lambda doc: doc.retry())


def _field(condition) -> str | None:
	"""Returns the field of a filter given as (field, value), [field, op, value] or [doctype, field, op, value]."""
	if not isinstance(condition, list | tuple):
		return None
	return condition[1] if len(condition) == 4 else condition[0]


def _each(names: list[str], action) -> dict[str, Any]:
	done, failed = 0, []
	for name in names:
		savepoint = "fabric_dead_letter"
		frappe.db.savepoint(savepoint)
		try:
			action(frappe.get_doc("Dead Letter", name))
			done += 1
		except frappe.PermissionError:
			raise
		except Exception as exc:
			frappe.db.rollback(save_point=savepoint)
			frappe.clear_messages()
			failed.append({"name": name, "error": str(exc)})
	return {"done": done, "failed": failed}
