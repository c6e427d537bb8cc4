"""Guards for fields only the app's own code may change (Frappe's read_only is a form hint only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def changed_fields(doc, fieldnames: Iterable[str]) -> list[str]:
	"""Returns those of ``fieldnames`` whose value differs from the version loaded before this save.

	Empty values (None, "", 0) count as the same, a number as its text (a generic endpoint may
	send either); a child table compares its rows without their bookkeeping. A new document has no
	earlier version: nothing changed.
	"""
	before = doc.get_doc_before_save()
	if before is None:
		return []
	return [name for name in fieldnames if _comparable(doc.get(name)) != _comparable(before.get(name))]


def _comparable(value: Any) -> Any:
	if isinstance(value, list):
		return [row.as_dict(no_default_fields=True) for row in value]
	return str(value or "")
