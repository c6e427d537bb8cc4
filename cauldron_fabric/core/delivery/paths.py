"""Dotted paths into an event's JSON form, shared by filters and field selections.

A path is names joined by dots, starting at the envelope's JSON keys (``data.payload.grand_total``,
``metadata.userId``); a segment of digits indexes a list (``data.payload.items.0.item_code``), and
``payload`` is short for ``data.payload``. A path that leads nowhere resolves to ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cauldron_fabric.core.envelope import Envelope

ROOTS = ("id", "type", "source", "time", "dataContentType", "specVersion", "dataSchema", "data", "metadata")
ALIASES = {"payload": ("data", "payload")}
SEGMENT = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)\Z")
MISSING = object()


def parse_path(text: str) -> tuple[str | int, ...]:
	"""Returns a path's segments (list indexes as ints); raises ValueError saying what is wrong."""
	segments = text.strip().split(".")
	for segment in segments:
		if not SEGMENT.match(segment):
			raise ValueError(
				f"{text!r} is not a dotted path: segment {segment!r} must be a name or a list index"
			)
	root = segments[0]
	if root not in ROOTS and root not in ALIASES:
		raise ValueError(
			f"unknown name {root!r} in {text!r}; paths start with one of {', '.join((*ROOTS, *ALIASES))}"
		)
	expanded = [*ALIASES.get(root, (root,)), *segments[1:]]
	return tuple(int(s) if s.isdigit() else s for s in expanded)


def resolve(document: Any, path: Sequence[str | int], default: Any = None) -> Any:
	"""Follows ``path`` through dicts and lists; returns ``default`` where it leads nowhere."""
	value = document
	for key in path:
		kind = type(value)
		# Exact type checks first: filters run this for every candidate of every event.
		if kind is dict or (kind is not list and isinstance(value, Mapping)):
			value = value.get(key if type(key) is str else str(key), MISSING)
			if value is MISSING:
				return default
		elif (kind is list or kind is tuple) and type(key) is int:
			if key >= len(value):
				return default
			value = value[key]
		else:
			return default
	return value


def getter(path: Sequence[str | int]) -> Callable[[Any], Any]:
	"""Returns a function resolving ``path`` like ``resolve``, compiled once for speed."""
	if not all(type(key) is str for key in path):
		return lambda document: resolve(document, path)
	keys = tuple(path)

	def get(document: Any) -> Any:
		# With names only, plain indexing behaves like resolve: a list or a string indexed by a
		# name raises TypeError, a missing key KeyError; both mean "leads nowhere".
		value = document
		try:
			for key in keys:
				value = value[key]
		except (KeyError, TypeError, IndexError):
			return None
		return value

	return get


def event_document(envelope: Envelope) -> dict[str, Any]:
	"""Returns the JSON-shaped dict that paths, filters and templates see for an envelope."""
	return envelope.to_dict()
