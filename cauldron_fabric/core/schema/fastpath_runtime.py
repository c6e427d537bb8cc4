"""What the checks ``fastpath`` generates call at run time: jsonschema's verdicts, reproduced.

Each function gives the answer jsonschema's keyword of the same name gives, without its
error objects; the generated source reaches them under a leading underscore.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from jsonschema import FormatChecker

from cauldron_fabric.core.schema.identity import json_equal

Check = Callable[[Any], bool]


def is_integer(value: Any) -> bool:
	"""Tells whether a value is a JSON integer (1.0 included, booleans not), as jsonschema does."""
	if isinstance(value, bool):
		return False
	return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def is_number(value: Any) -> bool:
	"""Tells whether a value is a JSON number (booleans not)."""
	return isinstance(value, numbers.Number) and not isinstance(value, bool)


def multiple_of(value: Any, step: Any) -> bool:
	"""Tells whether ``value`` is a multiple of ``step``, as jsonschema's multipleOf does (floats, overflow)."""
	if isinstance(step, float):
		quotient = value / step
		try:
			return int(quotient) == quotient
		except OverflowError:
			return (Fraction(value) / Fraction(step)).denominator == 1
	return not value % step


def unique(items: list[Any]) -> bool:
	"""Tells whether no two items are equal as JSON values (1 and 1.0 are, True and 1 are not)."""
	seen: list[Any] = []
	for item in items:
		if any(json_equal(item, earlier) for earlier in seen):
			return False
		seen.append(item)
	return True


def format_test(checker: FormatChecker, name: str) -> Check:
	"""Returns a function telling whether a value conforms to the format ``name``."""
	# FormatChecker.conforms without its lookups and exception round trip, same verdicts.
	func, raises = checker.checkers[name]

	def conforms(value: Any) -> bool:
		try:
			return bool(func(value))
		except raises:
			return False

	return conforms


def exactly_one(checks: tuple[Check, ...], value: Any) -> bool:
	"""Tells whether exactly one of ``checks`` accepts the value (oneOf)."""
	return sum(1 for check in checks if check(value)) == 1
