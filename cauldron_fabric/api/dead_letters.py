"""Dead letters in bulk: retry or discard the selected ones, or retry all that match filters.

Each letter goes through its own Retry or Discard (which check the role again), so deliveries
and consumers' letters alike are put back in play by their source; one letter that cannot be
retried is reported and does not stop the others. Each is committed once done.
"""

from __future__ import annotations

from typing import Any

import frappe
from frappe import _
from frappe.model import default_fields, optional_fields

from cauldron_fabric.api.params import json_param, names_param, number_param, required
from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.consume.dead_letters import shared_connections

DOCTYPE = "Dead Letter"
MAX_MATCHING = 5000


@frappe.whitelist(methods=["POST"])
def retry(names: list[str] | str | None = None) -> dict[str, Any]:
	"""Retries the named dead letters; returns how many were retried and why others were not."""
	require_role()
	return _each(_names(names), lambda doc: doc.retry())


@frappe.whitelist(methods=["POST"])
def discard(names: list[str] | str | None = None, note: str | None = None) -> dict[str, Any]:
	"""Discards the named dead letters, keeping them as a record."""
	require_role()
	return _each(_names(names), lambda doc: doc.discard(note))


@frappe.whitelist(methods=["POST"])
def retry_matching(filters: dict | list | str | None = None, limit: int = MAX_MATCHING) -> dict[str, Any]:
	"""Retries every Dead letter matching ``filters`` (a Dead Letter list filter), oldest first."""
	require_role()
	conditions = _filter_param(filters)
	# Only dead letters can be retried, whatever status the list showed.
	if isinstance(conditions, dict):
		conditions = {**{k: v for k, v in conditions.items() if k != "status"}, "status": "Dead"}
	else:
		conditions = [*(c for c in conditions if _field(c) != "status"), ["status", "=", "Dead"]]
	limit = min(max(number_param(limit, "limit"), 1), MAX_MATCHING)
	names = frappe.get_list(
		DOCTYPE,
		filters=conditions,
		pluck="name",
		order_by="creation asc",
		limit_page_length=limit,
	)
	return _each(names, lambda doc: doc.retry())


def _names(names: Any) -> list[str]:
	"""Returns the names of the letters a bulk call acts on: at most ``MAX_MATCHING``, as Retry all
	matching takes, or the call would run letter after letter long past any request's timeout."""
	letters = names_param(required(names, "names"), "names")
	if len(letters) > MAX_MATCHING:
		frappe.throw(
			_(
				"names lists {0} dead letters; at most {1} are taken in one call. Send them in parts of {1} or fewer."
			).format(len(letters), MAX_MATCHING),
			frappe.ValidationError,
		)
	return letters


def _filter_param(filters: Any) -> dict | list:
	"""Returns a Dead Letter list filter: an object of fields, or a list of conditions on its fields.

	Anything else is a validation error naming it, never handed to Frappe: it takes a text among
	the conditions as SQL of its own, and a condition on another DocType joins that table, so
	either would let the caller query any table through the count of letters retried.
	"""
	conditions = json_param(filters, "filters") if isinstance(filters, str) and filters.strip() else filters
	conditions = conditions or []
	if isinstance(conditions, dict):
		named = list(conditions)
	elif isinstance(conditions, list) and all(_is_condition(c) for c in conditions):
		named = [_field(c) for c in conditions]
	else:
		frappe.throw(
			_(
				'filters must be a Dead Letter list filter such as {{"event_type": "todo.created"}} or '
				'[["event_type", "=", "todo.created"]], not {0}.'
			).format(repr(conditions)),
			frappe.ValidationError,
		)
	if unknown := [f for f in named if not _is_field(f)]:
		frappe.throw(
			_("filters name no field of Dead Letter: {0}.").format(", ".join(map(repr, unknown))),
			frappe.ValidationError,
		)
	return conditions


def _is_field(name: Any) -> bool:
	"""Tells whether ``name`` is a column of Dead Letter: its fields, Frappe's standard ones and
	the list view's own (tags, assignments), which its filters use."""
	if not isinstance(name, str):
		return False
	return name in default_fields or name in optional_fields or frappe.get_meta(DOCTYPE).has_field(name)


def _is_condition(condition: Any) -> bool:
	"""Tells whether ``condition`` is (field, value), [field, op, value] or [Dead Letter, field, op, value]."""
	if not isinstance(condition, list | tuple) or len(condition) not in (2, 3, 4):
		return False
	return len(condition) < 4 or condition[0] == DOCTYPE


def _field(condition) -> str | None:
	"""Returns the field of a filter given as (field, value), [field, op, value] or [doctype, field, op, value]."""
	if not isinstance(condition, list | tuple):
		return None
	return condition[1] if len(condition) == 4 else condition[0]


def _each(names: list[str], action) -> dict[str, Any]:
	"""Runs ``action`` on each letter in a transaction of its own; returns how many went and why
	others did not.

	Retry and Discard lock their letter until the transaction ends (see DeadLetter.load_locked),
	and a consumer's Retry has sent its event before that: committed once at the end, every letter
	stayed locked while the rest were sent, and a consumer whose event died again meanwhile gave
	up waiting on it; a request that failed or timed out midway left letters Dead whose events had
	gone back. Each letter is committed as soon as it is done, as Frappe's own bulk actions do.
	Consumers' letters share one connection per broker (see shared_connections).
	"""
	done, failed = 0, []
	with shared_connections():
		for name in names:
			done += _one(name, action, failed)
	return {"done": done, "failed": failed}


def _one(name: str, action, failed: list[dict]) -> int:
	"""Runs ``action`` on one letter and commits it; returns 1 if it went, else notes why in ``failed``."""
	try:
		action(frappe.get_doc("Dead Letter", name))
		frappe.db.commit()
		return 1
	except frappe.PermissionError:
		raise
	except Exception as exc:
		frappe.db.rollback()
		frappe.clear_messages()
		failed.append({"name": name, "error": str(exc)})
		return 0
