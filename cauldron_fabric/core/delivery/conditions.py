"""A small, safe expression language for content filters on events.

Parsed once when a subscription is saved and compiled into plain Python closures: no ``eval``,
no attribute access, no calls but the few functions below, so an admin's filter can never run
code. Example: ``data.payload.grand_total > 1000 and data.entity == "Sales Invoice"``.
This module reads a filter (tokens, grammar, the errors pointing at a column); what its
operators and functions do with an event's values is in condition_values.

* Values: dotted paths (``data.payload.customer``, ``payload.items.0.qty``; see ``paths``),
  strings in single or double quotes (with JSON's escapes: ``\\n``, ``\\"``, ``\\u00e9``),
  numbers, ``true``/``false``/``null``, lists ``[1, 2]``.
* Operators: ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``, ``in`` and ``not in`` (list membership,
  substring, key of an object), ``and``, ``or``, ``not``, parentheses, unary ``-``.
* Functions: ``exists(path)`` (present and not null), ``len(x)``, ``lower(x)``, ``upper(x)``,
  ``startswith(x, prefix)``, ``endswith(x, suffix)``.
* Semantics: a missing path is ``null``; ``<`` and friends compare numbers with numbers and
  strings with strings and are false otherwise; ``true`` never equals ``1``; ``and``/``or``/``not``
  use the truth of their operands (``0``, ``""``, ``null``, ``[]`` are false).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cauldron_fabric.core.delivery.condition_values import (
	COMPARISONS,
	FUNCTIONS,
	Evaluator,
	compiled_comparison,
	compiled_membership,
	constant,
	is_number,
)
from cauldron_fabric.core.delivery.paths import MISSING, getter, parse_path
from cauldron_fabric.core.errors import ConfigurationError

MAX_LENGTH = 4000
MAX_DEPTH = 40
KEYWORDS = {"and", "or", "not", "in"}
CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
TOKEN = re.compile(
	r"""(?P<space>\s+)
	|(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
	|(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
	|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+))*)
	|(?P<op>==|!=|<=|>=|<|>|=)
	|(?P<punct>[()\[\],\-])""",
	re.VERBOSE,
)
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "\\": "\\", '"': '"', "'": "'"}
ESCAPE = re.compile(
	r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})|\\u([0-9a-f]{4})|\\(.)", re.IGNORECASE | re.DOTALL
)


class ConditionError(ConfigurationError):
	"""A filter that cannot be parsed; ``position`` is the 0-based column of the problem."""

	def __init__(self, source: str, position: int, problem: str):
		self.source, self.position, self.problem = source, position, problem
		pointer = " " * position + "^"
		super().__init__(
			f"Invalid condition at column {position + 1}: {problem}.\n    {source}\n    {pointer}\n"
			'Write comparisons such as data.payload.grand_total > 1000 and data.entity == "Sales Invoice".'
		)


@dataclass(frozen=True, slots=True)
class Token:
	"""One lexical token and where it starts."""

	kind: str
	text: str
	position: int


@dataclass(frozen=True, slots=True)
class Condition:
	"""A compiled filter; ``matches`` evaluates it against an event's JSON form."""

	source: str
	evaluate: Evaluator

	def matches(self, document: Mapping[str, Any]) -> bool:
		"""Tells whether the event (as ``Envelope.to_dict()``) satisfies the condition."""
		return bool(self.evaluate(document))


def compile_condition(source: str) -> Condition:
	"""Parses and compiles a filter; raises ConditionError pointing at the first problem."""
	if len(source) > MAX_LENGTH:
		raise ConditionError(source[:60] + "…", 0, f"the condition is longer than {MAX_LENGTH} characters")
	parser = _Parser(source, _tokenize(source))
	evaluate = parser.expression()
	return Condition(source, evaluate)


def _tokenize(source: str) -> list[Token]:
	tokens, position = [], 0
	while position < len(source):
		match = TOKEN.match(source, position)
		if match is None:
			problem = f"unexpected character {source[position]!r}"
			if source[position] in "\"'":
				problem = "this string is never closed; end it with the same quote"
			raise ConditionError(source, position, problem)
		kind = match.lastgroup or ""
		if kind != "space":
			tokens.append(Token(kind, match.group(), position))
		position = match.end()
	tokens.append(Token("end", "", len(source)))
	return tokens


class _Parser:
	"""Recursive descent over the tokens; each rule returns a compiled closure."""

	def __init__(self, source: str, tokens: list[Token]):
		self.source, self.tokens, self.index, self.depth = source, tokens, 0, 0

	def fail(self, token: Token, problem: str):
		raise ConditionError(self.source, token.position, problem)

	@property
	def token(self) -> Token:
		return self.tokens[self.index]

	def take(self) -> Token:
		token = self.tokens[self.index]
		self.index += 1
		return token

	def at(self, text: str) -> bool:
		token = self.token
		return token.text == text and token.kind in ("name", "op", "punct")

	def expect(self, text: str, problem: str) -> Token:
		if not self.at(text):
			self.fail(self.token, problem)
		return self.take()

	def expression(self) -> Evaluator:
		if self.token.kind == "end":
			self.fail(self.token, "the condition is empty")
		evaluate = self.disjunction()
		if self.token.kind != "end":
			self.fail(self.token, f"expected 'and', 'or' or the end, found {self.token.text!r}")
		return evaluate

	def nested(self, rule: Callable[[], Evaluator]) -> Evaluator:
		self.depth += 1
		if self.depth > MAX_DEPTH:
			self.fail(self.token, f"the condition nests deeper than {MAX_DEPTH} levels")
		try:
			return rule()
		finally:
			self.depth -= 1

	def disjunction(self) -> Evaluator:
		parts = [self.conjunction()]
		while self.at("or"):
			self.take()
			parts.append(self.conjunction())
		if len(parts) == 1:
			return parts[0]

		def any_part(doc: Mapping[str, Any]) -> bool:
			for part in parts:
				if part(doc):
					return True
			return False

		return any_part

	def conjunction(self) -> Evaluator:
		parts = [self.negation()]
		while self.at("and"):
			self.take()
			parts.append(self.negation())
		if len(parts) == 1:
			return parts[0]

		def all_parts(doc: Mapping[str, Any]) -> bool:
			for part in parts:
				if not part(doc):
					return False
			return True

		return all_parts

	def negation(self) -> Evaluator:
		if self.at("not"):
			self.take()
			inner = self.nested(self.negation)
			return lambda doc: not inner(doc)
		return self.comparison()

	def comparison(self) -> Evaluator:
		left = self.unary()
		token = self.token
		if token.kind == "op":
			if token.text == "=":
				self.fail(token, "use '==' to compare (a single '=' assigns nothing here)")
			self.take()
			return compiled_comparison(COMPARISONS[token.text], left, self.operand(token))
		if self.at("in") or self.at("not"):
			negate = self.take().text == "not"
			if negate:
				self.expect("in", "expected 'in' after 'not' (write: x not in [...])")
			contains = compiled_membership(left, self.operand(token))
			return (lambda doc: not contains(doc)) if negate else contains
		return left

	def operand(self, operator_token: Token) -> Evaluator:
		if self.token.kind == "end":
			self.fail(self.token, f"expected a value after {operator_token.text!r}")
		return self.unary()

	def unary(self) -> Evaluator:
		if not self.at("-"):
			return self.primary()
		self.take()
		inner = self.nested(self.unary)

		def negative(doc: Mapping[str, Any]) -> Any:
			value = inner(doc)
			return -value if is_number(value) else None

		return negative

	def primary(self) -> Evaluator:
		token = self.take()
		if token.kind == "number":
			return constant(float(token.text) if any(c in token.text for c in ".eE") else int(token.text))
		if token.kind == "string":
			return constant(self.string(token))
		if token.kind == "name":
			return self.name(token)
		if token.text == "(":
			inner = self.nested(self.disjunction)
			self.expect(")", "expected ')' to close the '(' opened earlier")
			return inner
		if token.text == "[":
			return self.list_literal()
		if token.kind == "end":
			self.fail(token, "the condition ends where a value was expected")
		self.fail(token, f"expected a value, found {token.text!r}")

	def string(self, token: Token) -> str:
		try:
			return _unquote(token.text)
		except EscapeError as exc:
			self.fail(Token("string", token.text, token.position + exc.offset), exc.problem)

	def name(self, token: Token) -> Evaluator:
		if token.text in CONSTANTS:
			return constant(CONSTANTS[token.text])
		if token.text in KEYWORDS:
			self.fail(token, f"expected a value, found the keyword {token.text!r}")
		if self.at("("):
			return self.call(token)
		try:
			path = parse_path(token.text)
		except ValueError as exc:
			self.fail(token, str(exc))
		return getter(path)

	def list_literal(self) -> Evaluator:
		items = []
		while not self.at("]"):
			if items:
				self.expect(",", "expected ',' or ']' in the list")
			items.append(self.nested(self.disjunction))
		self.take()
		literals = [getattr(item, "value", MISSING) for item in items]
		if MISSING not in literals:
			return constant(literals)
		return lambda doc: [item(doc) for item in items]

	def call(self, name: Token) -> Evaluator:
		if name.text not in FUNCTIONS:
			self.fail(name, f"unknown function {name.text!r}; use one of {', '.join(sorted(FUNCTIONS))}")
		function, arity = FUNCTIONS[name.text]
		self.take()
		if name.text == "exists":
			argument = self.take()
			if argument.kind != "name" or argument.text in CONSTANTS or argument.text in KEYWORDS:
				self.fail(argument, "exists() takes a dotted path, such as exists(data.payload.customer)")
			try:
				path = parse_path(argument.text)
			except ValueError as exc:
				self.fail(argument, str(exc))
			self.expect(")", "exists() takes exactly one path; expected ')'")
			get = getter(path)
			return lambda doc: get(doc) is not None
		arguments = []
		while not self.at(")"):
			if arguments:
				self.expect(",", f"expected ',' or ')' in the arguments of {name.text}()")
			arguments.append(self.nested(self.disjunction))
		if len(arguments) != arity:
			self.fail(self.token, f"{name.text}() takes {arity} argument(s), got {len(arguments)}")
		self.take()
		if arity == 1:
			(only,) = arguments
			return lambda doc: function(only(doc))
		first, second = arguments
		return lambda doc: function(first(doc), second(doc))


class EscapeError(ValueError):
	"""An escape that stands for no character; ``offset`` is its column in the string literal."""

	def __init__(self, offset: int, problem: str):
		super().__init__(problem)
		self.offset, self.problem = offset, problem


def _unquote(literal: str) -> str:
	"""Returns a string literal's text, its escapes read as JSON reads them (plus ``\\'``).

	``\\u00e9`` is é and a surrogate pair (``\\ud83d\\ude00``) one character, so a filter
	copied from JSON matches. A ``\\u`` that stands for no character is refused: a string no
	event can contain would make the condition silently never match. Any other escaped
	character stands for itself.
	"""

	def replace(match: re.Match) -> str:
		high, low, code, other = match.groups()
		if high:
			return chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
		if code and not 0xD800 <= int(code, 16) <= 0xDFFF:
			return chr(int(code, 16))
		if code:
			raise EscapeError(match.start() + 1, f"\\u{code} is half of a surrogate pair; write both halves")
		if other == "u":
			raise EscapeError(
				match.start() + 1, "write \\u followed by four hexadecimal digits, e.g. \\u00e9"
			)
		return ESCAPES.get(other, other)

	return ESCAPE.sub(replace, literal[1:-1])
