"""The document as saved, and what changed since the version before the save."""

from __future__ import annotations

import datetime as dt
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
	# A document is compared value by value, in the form document_payload gives (dates as
	# str()): rendering the whole previous version would cost as much as the payload itself.
	old_of = before.get if isinstance(before, dict) else lambda key: _plain(before.get(key))
	changes: dict[str, Any] = {}
	for key, new in after.items():
		if key in IGNORED_FIELDS or key.startswith("_"):
			continue
		if isinstance(new, list):
			old_rows = before.get(key) or []
			if _rows_differ(old_rows, new):
				changes[key] = {"old": [_row_payload(row) for row in old_rows], "new": new}
			continue
		old = old_of(key)
		if old != new:
			changes[key] = {"old": old, "new": new}
	return changes


def _plain(value: Any) -> Any:
	"""Renders a stored value the way as_dict(convert_dates_to_str=True) does."""
	return str(value) if isinstance(value, dt.date | dt.time | dt.timedelta) else value


def _row_payload(row) -> dict[str, Any]:
	if isinstance(row, dict):
		return row
	data = BaseDocument.as_dict(row, convert_dates_to_str=True, no_nulls=False)
	_drop_internal(data)
	return data


def _rows_differ(old_rows: list, new_rows: list[dict[str, Any]]) -> bool:
	if len(old_rows) != len(new_rows):
		return True
	for old, new in zip(old_rows, new_rows, strict=True):
		get = old.get
		for key, value in new.items():
			if key in IGNORED_FIELDS or key.startswith("_"):
				continue
			previous = get(key)
			if (previous if isinstance(old, dict) else _plain(previous)) != value:
				return True
	return False
