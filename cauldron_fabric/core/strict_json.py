"""Reading JSON text strictly, as every event and request body is read.

The standard library reads more than JSON (RFC 8259) allows: ``NaN`` and ``Infinity``, numbers
past what a float holds, an object naming a key twice, half a surrogate pair. Each gives a
handler a value that another reader of the same bytes would see otherwise, or that no UTF-8
column, message or log can hold: these readers refuse them, saying what to send instead.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from cauldron_fabric.core.errors import InvalidEnvelope


def load_json(text: str | bytes) -> Any:
	"""Parses a message body; raises InvalidEnvelope when it is not JSON.

	``NaN``, ``Infinity`` and a number too large for a float (``1e999``) are refused: JSON has
	no such values (RFC 8259), the standard library alone reads them, and a handler given one
	would store or compare a float that is no number.

	So is an object that names a key twice: parsers disagree on which value counts (the first,
	the last, an error), so the event a handler acts on could differ from the one another
	service, or a schema check elsewhere, reads from the same bytes.

	So is half a surrogate pair escaped alone (``\\ud800``): JSON reads it, but it is no
	character, and no UTF-8 column, message or log can hold the text it makes.
	"""
	try:
		value = strict_loads(text)
	except (ValueError, RecursionError) as exc:  # not UTF-8 is a ValueError; nested thousands deep
		raise InvalidEnvelope([f"body is not valid JSON ({exc})"]) from exc
	if (_SURROGATE_ESCAPE if isinstance(text, str) else _SURROGATE_ESCAPE_BYTES).search(text):
		try:
			json.dumps(value, ensure_ascii=False).encode("utf-8")
		except UnicodeEncodeError as exc:
			raise InvalidEnvelope(
				[
					"body holds a lone surrogate escape (such as \\ud800), which is no character: "
					"send each character whole, or both halves of its surrogate pair"
				]
			) from exc
	return value


# An escaped UTF-16 surrogate: paired ones make one character, a lone one none (checked then).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


class DuplicateKey(ValueError):
	"""A JSON object that names a key twice."""


def strict_loads(text: str | bytes) -> Any:
	"""``json.loads`` refusing what load_json refuses (ValueError; DuplicateKey for a key named twice)."""
	return json.loads(
		text, parse_constant=_no_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
	)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
	found = dict(pairs)
	if len(found) != len(pairs):
		seen: set[str] = set()
		twice = next(key for key, _ in pairs if key in seen or seen.add(key))
		raise DuplicateKey(f"the key {twice[:80]!r} appears twice in one object: send each key once")
	return found


def _no_constant(token: str) -> Any:
	raise ValueError(f"{token} is no JSON value: send a number, or null")


def _finite_float(token: str) -> float:
	value = float(token)
	if not math.isfinite(value):
		raise ValueError(f"{token[:40]} is too large for a number: send it as a string")
	return value
