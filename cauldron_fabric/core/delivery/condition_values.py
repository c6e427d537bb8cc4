"""What a condition's operators and functions do with an event's JSON values.

The parser (see conditions) compiles a filter into closures built here. Comparisons follow
JSON rather than Python: numbers compare by value whatever their type, ``true`` never equals
``1``, ``<`` and friends are false between a number and a string, and a function given a value
of the wrong type yields ``null`` (``startswith``/``endswith``: false) instead of raising. A comparison or membership test against
a literal reads the literal once, when the filter is compiled, not on every event.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from cauldron_fabric.core.delivery.paths import MISSING

Evaluator = Callable[[Mapping[str, Any]], Any]


NUMBER_TYPES = frozenset({int, float, Decimal})


def is_number(value: Any) -> bool:
	"""Tells whether a value is a JSON number (a bool is not)."""
	return type(value) in NUMBER_TYPES or (
		isinstance(value, int | float | Decimal) and not isinstance(value, bool)
	)


def constant(value: Any) -> Evaluator:
	"""Returns an evaluator of a literal; its ``value`` lets comparisons skip the call."""

	def literal(doc: Mapping[str, Any]) -> Any:
		return value

	literal.value = value  # lets comparisons against literals skip a call per evaluation
	return literal


def equal(left: Any, right: Any) -> bool:
	"""Compares like JSON: numbers by value, ``true`` never equal to ``1``, other types strictly."""
	if type(left) is type(right):
		return left == right
	return is_number(left) and is_number(right) and left == right


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
	def ordered(left: Any, right: Any) -> bool:
		kinds = (type(left), type(right))
		if (kinds[0] in NUMBER_TYPES and kinds[1] in NUMBER_TYPES) or kinds == (str, str):
			return compare(left, right)
		if (is_number(left) and is_number(right)) or (isinstance(left, str) and isinstance(right, str)):
			return compare(left, right)
		return False

	return ordered


def contains(container: Any, item: Any) -> bool:
	"""Implements ``in``: list membership, substring of a string, key of an object."""
	if isinstance(container, str):
		return isinstance(item, str) and item in container
	if isinstance(container, Mapping):
		return isinstance(item, str) and item in container
	if isinstance(container, list | tuple):
		return any(equal(item, element) for element in container)
	return False


COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
	"==": equal,
	"!=": lambda left, right: not equal(left, right),
	"<": _ordered(operator.lt),
	"<=": _ordered(operator.le),
	">": _ordered(operator.gt),
	">=": _ordered(operator.ge),
}


def compiled_comparison(compare: Callable[[Any, Any], bool], left: Evaluator, right: Evaluator) -> Evaluator:
	"""Returns an evaluator comparing two operands, reading a literal right operand only once."""
	literal = getattr(right, "value", MISSING)
	if literal is MISSING:
		return lambda doc: compare(left(doc), right(doc))
	return lambda doc: compare(left(doc), literal)


def compiled_membership(item: Evaluator, container: Evaluator) -> Evaluator:
	"""Returns an evaluator of ``item in container``; a literal list of texts becomes a set lookup."""
	literal = getattr(container, "value", None)
	if type(literal) is list and literal and all(type(v) is str for v in literal):
		names = frozenset(literal)

		def among(doc: Mapping[str, Any]) -> bool:
			value = item(doc)
			return type(value) is str and value in names

		return among
	return lambda doc: contains(container(doc), item(doc))


def _text_function(convert: Callable[[str], Any]) -> Callable[[Any], Any]:
	return lambda value: convert(value) if isinstance(value, str) else None


def _affix(check: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
	return lambda value, affix: isinstance(value, str) and isinstance(affix, str) and check(value, affix)


FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
	"exists": (lambda value: value is not None, 1),
	"len": (lambda value: len(value) if isinstance(value, str | list | tuple | Mapping) else None, 1),
	"lower": (_text_function(str.lower), 1),
	"upper": (_text_function(str.upper), 1),
	"startswith": (_affix(str.startswith), 2),
	"endswith": (_affix(str.endswith), 2),
}
