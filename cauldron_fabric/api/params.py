"""Reading request parameters: a malformed one is a clear validation error, never a 500."""

from __future__ import annotations

import json
from typing import Any

import frappe
from frappe import _

from cauldron_fabric.core.markup import has_markup


def required(value: Any, name: str) -> Any:
	"""Returns ``value``; a missing or blank one is a validation error naming it (not a 500 for
	a missing argument)."""
	if value is None or (isinstance(value, str) and not value.strip()):
		frappe.throw(_("{0} is required.").format(name), frappe.ValidationError)
	return value


def text_param(value: Any, name: str) -> str | None:
	"""Returns ``value`` when it is a text or None.

	A JSON body can carry a number, a list or an object anywhere: refused by name here, it would
	otherwise fail deep down (a str method, a SQL query, Redis) as HTTP 500, or turn into a
	filter operator (``["like", "%"]``).
	"""
	if value is not None and not isinstance(value, str):
		frappe.throw(_("{0} must be a text, not {1}.").format(name, repr(value)), frappe.ValidationError)
	return value


def shown_text_param(value: Any, name: str) -> str | None:
	"""Returns ``value`` (a text or None) when it holds no ``<`` or ``>``.

	For a text the fabric keeps where Desk renders it as HTML without Frappe's sanitizing on
	save (a request target listed as a Fabric Circuit): its markup would run in the browser of
	the admin who opens the list. Frappe refuses the same characters in document names.
	"""
	if (text := text_param(value, name)) and has_markup(text):
		frappe.throw(_("{0} may not contain < or >.").format(name), frappe.ValidationError)
	return text


def number_param(value: Any, name: str, *, whole: bool = True) -> int | float:
	"""Returns ``value`` as an integer (or a float when ``whole`` is false)."""
	try:
		if isinstance(value, bool):
			raise ValueError(value)
		return int(value) if whole else float(value)
	except (TypeError, ValueError):
		kind = _("a whole number") if whole else _("a number")
		frappe.throw(_("{0} must be {1}, not {2}.").format(name, kind, repr(value)), frappe.ValidationError)


def limit_param(value: Any, maximum: int) -> int:
	"""Returns a page size from 1 to ``maximum``."""
	limit = number_param(value, "limit")
	if not 0 < limit <= maximum:
		frappe.throw(_("limit must be between 1 and {0}.").format(maximum), frappe.ValidationError)
	return limit


def names_param(value: Any, name: str) -> list[str]:
	"""Returns a list of names given as a list, a JSON list, or one name."""
	if isinstance(value, str):
		value = json_param(value, name) if value.startswith("[") else [value]
	# A JSON body can carry a number, null or a list of objects here: refuse them by name
	# rather than fail in list() (HTTP 500) or look them up as names.
	if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
		frappe.throw(
			_('{0} must be a list of names such as ["a", "b"], not {1}.').format(name, repr(value)),
			frappe.ValidationError,
		)
	return list(value)


def json_param(value: Any, name: str) -> Any:
	"""Returns a JSON text parsed (other values as they are)."""
	if not isinstance(value, str):
		return value
	try:
		return json.loads(value)
	except ValueError as exc:
		frappe.throw(
			_("{0} is not valid JSON ({1}); send a JSON list or object.").format(name, exc),
			frappe.ValidationError,
		)


def is_filter_value(value: Any) -> bool:
	"""Tells whether ``value`` is one Frappe writes into a list filter's condition: a text, a
	number or null. Frappe writes any other (an object, a nested list) as Python's text of it,
	and the query fails (HTTP 500)."""
	return value is None or isinstance(value, str | int | float)
