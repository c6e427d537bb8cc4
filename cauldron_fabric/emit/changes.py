"""The document as saved, and what changed since the version before the save."""

from __future__ import annotations

from typing import Any

from frappe.model.base_document import BaseDocument

# Bookkeeping that changes on every save and says nothing about the business change.
IGNORED_FIELDS = frozenset({"modified", "modified_by", "creation", "owner", "lft", "rgt"})


def document_payload(doc) -> dict[str, Any]:
	"""Returns the document with its child tables, dates as strings, internals stripped."""
	# BaseDocument's as_dict, not the document's: some controllers (Page) override it with
	# another signature.
	data = BaseDocument.as_dict(doc, convert_dates_to_str=True, no_nulls=False)
	_drop_internal(data)
	for value in data.values():
		if isinstance(value, list):  # child tables: one level of row dicts
			for row in value:
				_drop_internal(row)
	return data


def _drop_internal(row: dict[str, Any]) -> None:
	"""Removes Frappe's in-memory flags (__islocal, __unsaved, __onload …) from a row."""
	for key in [key for key in row if key.startswith("__")]:
		del row[key]


def document_changes(before, after: dict[str, Any]) -> dict[str, Any] | None:
	"""Returns ``{field: {"old": …, "new": …}}`` for every field that changed; None when unknown.

	``before`` is a document or the payload of an earlier event.

	Child tables count as changed when any row's content, order or number changed; both
	versions of the table are given then.
	"""
	if before is None:
		return None
	previous = before if isinstance(before, dict) else document_payload(before)
	changes: dict[str, Any] = {}
	for key in after.keys() | previous.keys():
		if key in IGNORED_FIELDS or key.startswith("_"):
			continue
		old, new = previous.get(key), after.get(key)
		if isinstance(old, list) or isinstance(new, list):
			if _rows(old) != _rows(new):
				changes[key] = {"old": old or [], "new": new or []}
		elif old != new:
			changes[key] = {"old": old, "new": new}
	return changes


def _rows(rows) -> list[dict[str, Any]]:
	return [{k: v for k, v in row.items() if k not in IGNORED_FIELDS} for row in rows or []]
