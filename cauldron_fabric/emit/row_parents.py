"""The parents of child table rows changed alone (``rows.py``): the key their held changes go
under, whether Frappe is saving one, what the policy emits for one, and many read together.
"""

from __future__ import annotations

from typing import Any

import frappe

from cauldron_fabric.emit.document_events import stored_documents
from cauldron_fabric.emit.policy import current_policy


def _kind_of(doctype: str) -> str | None:
	"""Returns what the policy emits for ``doctype`` (None: nothing, or no such DocType)."""
	try:
		return current_policy().kind_of(doctype)
	except frappe.DoesNotExistError:
		return None


def parents_of(rows) -> dict[tuple, Any]:
	"""Returns the parents of ``rows`` (by their key in the held changes; None when gone), read
	together (``stored_documents``): for many rows written at once, not one read each."""
	keys = (_parent_key(row.parenttype, row.parent) for row in rows)
	return _read_together(key for key in keys if all(key) and _emits(key[0]))


def _emits(doctype: str) -> bool:
	return _kind_of(doctype) is not None


def _read_together(keys) -> dict[tuple, Any]:
	"""Returns the documents of ``keys`` (DocType and name) by key, None for those gone, reading
	each DocType's together."""
	wanted: dict[str, set[str]] = {}
	for doctype, name in keys:
		wanted.setdefault(doctype, set()).add(name)
	found: dict[tuple, Any] = {}
	for doctype, names in wanted.items():
		stored = stored_documents(doctype, sorted(names))
		found.update({(doctype, name): stored.get(name) for name in names})
	return found


def _in_currently_saving(doctype: str, name: str) -> bool:
	"""Tells whether Frappe notes a save of ``doctype`` ``name`` (a row's parent, named in a string).

	Autoincrement names are integers in ``currently_saving``. The list is searched in C, not
	copied: Frappe never removes an insert's entry under None, so in a long job it grows with
	every insert.
	"""
	saving = frappe.flags.currently_saving or ()
	if (doctype, name) in saving:
		return True
	return name.isdecimal() and str(int(name)) == name and (doctype, int(name)) in saving


def _parent_key(doctype: str | None, name) -> tuple:
	"""Returns the key of a parent's held row changes: autoincrement names are integers on the
	parent and in ``currently_saving``, strings in the rows' ``parent`` column."""
	return (doctype, None if name is None else str(name))
