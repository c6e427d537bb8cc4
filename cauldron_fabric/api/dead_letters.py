"""Dead letters in bulk: retry or discard the selected ones, or retry all that match filters.

Each call answers with how many letters went and why others did not, or, over Fabric Settings'
*Dead letters a bulk action takes in the request* (500 by default), with the id of the
background job that acts on them (see services.dead_letter_bulk).
"""

from __future__ import annotations

from typing import Any

import frappe
from frappe import _
from frappe.model import default_fields, optional_fields

from cauldron_fabric.api.params import is_filter_value, json_param, names_param, number_param, required
from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.cauldron_fabric.doctype.dead_letter.dead_letter import discard_note
from cauldron_fabric.services.dead_letter_bulk import act_on_letters

DOCTYPE = "Dead Letter"
MAX_MATCHING = 5000


@frappe.whitelist(methods=["POST"])
def retry(names: list[str] | str | None = None) -> dict[str, Any]:
	"""Retries the named dead letters; returns how many were retried and why others were not."""
	require_role()
	return act_on_letters("retry", _names(names))


@frappe.whitelist(methods=["POST"])
def discard(names: list[str] | str | None = None, note: str | None = None) -> dict[str, Any]:
	"""Discards the named dead letters, keeping them as a record."""
	require_role()
	discard_note(note)  # refused once for all, not once a letter
	return act_on_letters("discard", _names(names), note)


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
	return act_on_letters("retry", names)


def _names(names: Any) -> list[str]:
	"""Returns the names of the letters a bulk call acts on: at most ``MAX_MATCHING``, as Retry all
	matching takes (more than Fabric Settings' in-request share run as a background job)."""
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
	tests = conditions.values() if isinstance(conditions, dict) else map(_test, conditions)
	if bad := [test for test in tests if not _is_test(test)]:
		frappe.throw(
			_(
				'filters compare a field with a value, or with [operator, value] such as ["like", "todo.%"]'
				' or ["in", ["a", "b"]]; these are neither: {0}.'
			).format(", ".join(map(repr, bad))),
			frappe.ValidationError,
		)
	return conditions


# The operators of Desk's list filters that compare a field with values.
OPERATORS = frozenset(
	{"=", "!=", "<", ">", "<=", ">=", "like", "not like", "in", "not in", "is", "between", "timespan"}
)
LIST_OPERATORS = frozenset({"in", "not in", "between"})


def _test(condition) -> Any:
	"""Returns a listed condition's test as a field's value in the object form: a value, or
	[operator, value]."""
	return condition[1] if len(condition) == 2 else list(condition[-2:])


def _is_test(test: Any) -> bool:
	"""Tells whether ``test`` is a plain value, or [operator, value] with one of OPERATORS.

	Frappe writes a value of another kind (an object, a list where none belongs) into its query
	as Python's text of it, and fails on the query (HTTP 500), or on a list too short.
	"""
	if is_filter_value(test):
		return True
	if not isinstance(test, list | tuple) or len(test) != 2 or not isinstance(test[0], str):
		return False
	operator, value = test[0].strip().lower(), test[1]
	if operator in LIST_OPERATORS and isinstance(value, list | tuple):
		return all(is_filter_value(item) for item in value)
	return operator in OPERATORS and is_filter_value(value) and (value is not None or operator == "is")


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
