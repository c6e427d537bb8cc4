"""A compiled yes/no check for a JSON Schema, giving jsonschema's verdict many times faster.

jsonschema walks the schema for every event (a few thousand validations a second at best for
a 2 KB payload, fewer for a strict document schema); the fabric validates every event on every
path, so ``compile_check`` turns a schema into Python source once: one function per object or
array, leaf checks inlined. It answers
only "valid or not"; the error list of an invalid event still comes from jsonschema, so
messages and paths never depend on this module.

The compiler knows the common keywords of draft 2020-12 and draft-07. A schema using one it
does not know (``unevaluatedProperties``, ``contains``, ``$dynamicRef``, a nested ``$id``, a
remote ``$ref``...) gets ``None`` and the caller uses jsonschema alone. Keywords that are not
part of the draft are ignored, as jsonschema ignores them. ``tests/test_schema_fastpath.py``
checks the verdicts against jsonschema's on generated instances. What the generated
functions call at run time is in ``fastpath_runtime``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jsonschema import FormatChecker

from cauldron_fabric.core.schema import fastpath_runtime
from cauldron_fabric.core.schema.depth import MAX_WALK_DEPTH
from cauldron_fabric.core.schema.dialect import DRAFT_07, dialect_of, resolve_ref, validator_class
from cauldron_fabric.core.schema.fastpath_runtime import Check
from cauldron_fabric.core.schema.identity import json_equal

SUPPORTED = frozenset(
	"$ref type enum const format pattern minLength maxLength minimum maximum exclusiveMinimum "
	"exclusiveMaximum multipleOf properties required additionalProperties patternProperties "
	"minProperties maxProperties dependentRequired dependentSchemas dependencies propertyNames items "
	"prefixItems additionalItems minItems maxItems uniqueItems allOf anyOf oneOf not if then else".split()
)


class _Unsupported(Exception):
	"""The schema uses something the compiler does not reproduce exactly."""


_SCALAR_KEYWORDS = frozenset(
	{"type", "enum", "maxLength", "minLength", "pattern", "format", "minimum", "maximum", "multipleOf"}
	| {"exclusiveMinimum", "exclusiveMaximum", "title", "description", "default", "examples", "$comment"}
)


def _nullable_scalar(schema: Any) -> bool:
	"""Tells whether a schema is a plain scalar check whose ``type`` list includes null."""
	if (
		not isinstance(schema, Mapping)
		or not isinstance(schema.get("type"), list)
		or "null" not in schema["type"]
	):
		return False
	if "enum" in schema and None not in schema["enum"]:
		return False
	return all(k in _SCALAR_KEYWORDS or k.startswith("x-") for k in schema)


def _without_null(schema: Mapping) -> dict[str, Any]:
	result = {**schema, "type": [t for t in schema["type"] if t != "null"]}
	if "enum" in schema:
		result["enum"] = [e for e in schema["enum"] if e is not None]
	return result


_TYPE_TESTS = {
	"string": "({v}.__class__ is str or isinstance({v}, str))",
	"object": "isinstance({v}, dict)",
	"array": "isinstance({v}, list)",
	"null": "{v} is None",
	"boolean": "({v} is True or {v} is False)",
	"integer": "({v}.__class__ is int or _is_integer({v}))",
	"number": "({v}.__class__ is int or {v}.__class__ is float or _is_number({v}))",
}
_NUMBER_OPS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


class _Compiler:
	def __init__(self, root: Any, format_checker: FormatChecker | None):
		self.root = root
		self.draft07 = isinstance(root, Mapping) and dialect_of(root) == DRAFT_07
		self.vocabulary = frozenset(validator_class(root).VALIDATORS)
		self.format_checker = format_checker
		self.namespace: dict[str, Any] = {
			"_is_integer": fastpath_runtime.is_integer,
			"_is_number": fastpath_runtime.is_number,
			"_multiple_of": fastpath_runtime.multiple_of,
			"_unique": fastpath_runtime.unique,
			"_exactly_one": fastpath_runtime.exactly_one,
			"_json_equal": json_equal,
		}
		self.sources: list[str] = []
		self.functions: dict[int, str] = {}
		self.count = 0
		self.depth = 0  # how many expressions are nested in the one being written

	def new_name(self) -> str:
		self.count += 1
		return f"_f{self.count}"

	def constant(self, value: Any) -> str:
		name = f"_c{len(self.namespace)}"
		self.namespace[name] = value
		return name

	def function(self, node: Any) -> str:
		"""Returns the name of a generated function checking ``node`` (memoised, so recursion works)."""
		if id(node) in self.functions:
			return self.functions[id(node)]
		name = self.functions[id(node)] = self.new_name()
		self.sources.append(f"def {name}(v):\n\treturn {self.expression(node, 'v')}\n")
		return name

	def expression(self, node: Any, v: str) -> str:
		"""Returns a Python expression that is true when the value named ``v`` matches ``node``."""
		if self.depth >= MAX_WALK_DEPTH:
			# Following $refs can lead deeper than the schema's own nesting: leave it to jsonschema.
			raise _Unsupported(f"nesting deeper than {MAX_WALK_DEPTH} levels")
		self.depth += 1
		try:
			return self._expression(node, v)
		finally:
			self.depth -= 1

	def _expression(self, node: Any, v: str) -> str:
		if node is True:
			return "True"
		if node is False:
			return "False"
		if not isinstance(node, Mapping):
			raise _Unsupported("a schema must be an object or a boolean")
		if isinstance(node.get("$ref"), str) and self.draft07:
			return f"{self.function(self.target(node['$ref']))}({v})"
		unknown = [k for k in node if k in self.vocabulary and k not in SUPPORTED]
		if unknown or ("$id" in node and node is not self.root):
			raise _Unsupported(", ".join(unknown) or "$id")
		parts = [self.types(node, v)]
		if isinstance(node.get("$ref"), str):
			parts.append(f"{self.function(self.target(node['$ref']))}({v})")
		if "enum" in node:
			parts.append(self.enum(node["enum"], v))
		if isinstance(node.get("const"), str):
			parts.append(f"(isinstance({v}, str) and {v} == {node['const']!r})")
		elif "const" in node:
			parts.append(f"_json_equal({v}, {self.constant(node['const'])})")
		parts.extend(self.combinators(node, v))
		parts = [p for p in parts if p != "True"]
		return "(" + " and ".join(parts) + ")" if parts else "True"

	def target(self, ref: str) -> Any:
		if not ref.startswith("#"):
			raise _Unsupported("remote $ref")
		return resolve_ref(self.root, ref)

	def types(self, node: Mapping, v: str) -> str:
		families = {
			"string": self.string_conditions(node, v),
			"number": self.number_conditions(node, v),
			"object": self.container(node, v, "object"),
			"array": self.container(node, v, "array"),
		}
		declared = node.get("type")
		if declared is None:
			guards = {"string": "string", "number": "number", "object": "object", "array": "array"}
			return (
				" and ".join(
					f"(not {_TYPE_TESTS[guards[f]].format(v=v)} or {' and '.join(conds)})"
					for f, conds in families.items()
					if conds
				)
				or "True"
			)
		alternatives = []
		for json_type in [declared] if isinstance(declared, str) else declared:
			conds = families.get("number" if json_type == "integer" else json_type) or []
			alternatives.append(" and ".join([_TYPE_TESTS[json_type].format(v=v), *conds]))
		return "(" + " or ".join(f"({a})" for a in alternatives) + ")"

	def string_conditions(self, node: Mapping, v: str) -> list[str]:
		conds = []
		if "minLength" in node:
			conds.append(f"len({v}) >= {node['minLength']!r}")
		if "maxLength" in node:
			conds.append(f"len({v}) <= {node['maxLength']!r}")
		if "pattern" in node:
			conds.append(f"{self.constant(re.compile(node['pattern']))}.search({v}) is not None")
		if (
			"format" in node
			and self.format_checker is not None
			and node["format"] in self.format_checker.checkers
		):
			conds.append(
				f"{self.constant(fastpath_runtime.format_test(self.format_checker, node['format']))}({v})"
			)
		return conds

	def number_conditions(self, node: Mapping, v: str) -> list[str]:
		conds = [f"{v} {op} {node[k]!r}" for k, op in _NUMBER_OPS.items() if k in node]
		if "multipleOf" in node:
			conds.append(f"_multiple_of({v}, {node['multipleOf']!r})")
		return conds

	def enum(self, values: list[Any], v: str) -> str:
		slow = f"any(_json_equal({v}, e) for e in {self.constant(tuple(values))})"
		if values and all(isinstance(e, str) for e in values):
			return f"(isinstance({v}, str) and {v} in {self.constant(frozenset(values))})"
		if all(isinstance(e, str | int | float | type(None)) and not isinstance(e, bool) for e in values):
			# Set lookup is exact for these classes as long as no boolean is involved (True == 1).
			fast = f"{v} in {self.constant(frozenset(values))}"
			plain = f"{v}.__class__ is str or {v}.__class__ is int or {v}.__class__ is float or {v} is None"
			return f"(({fast}) if ({plain}) else {slow})"
		return slow

	def combinators(self, node: Mapping, v: str) -> list[str]:
		parts = [self.expression(sub, v) for sub in node.get("allOf") or ()]
		if "anyOf" in node:
			parts.append("(" + " or ".join(self.expression(sub, v) for sub in node["anyOf"]) + ")")
		if "oneOf" in node:
			names = ", ".join(self.function(sub) for sub in node["oneOf"])
			parts.append(f"_exactly_one(({names},), {v})")
		if "not" in node:
			parts.append(f"not {self.expression(node['not'], v)}")
		if "if" in node and ("then" in node or "else" in node):
			condition = self.expression(node["if"], v)
			then, otherwise = (
				self.expression(node.get("then", True), v),
				self.expression(node.get("else", True), v),
			)
			parts.append(f"(({then}) if {condition} else ({otherwise}))")
		return parts

	def container(self, node: Mapping, v: str, kind: str) -> list[str]:
		body = self.object_body(node) if kind == "object" else self.array_body(node)
		if not body:
			return []
		name = self.new_name()
		self.sources.append(f"def {name}(x):\n" + "".join(f"\t{line}\n" for line in body) + "\treturn True\n")
		return [f"{name}({v})"]

	def object_body(self, node: Mapping) -> list[str]:
		lines = []
		properties = node.get("properties") or {}
		required = list(dict.fromkeys(node.get("required") or ()))
		for name in required:
			if name not in properties:
				lines.append(f"if {name!r} not in x: return False")
		if "minProperties" in node:
			lines.append(f"if len(x) < {node['minProperties']!r}: return False")
		if "maxProperties" in node:
			lines.append(f"if len(x) > {node['maxProperties']!r}: return False")
		# "in" plus a subscript is cheaper than a dict.get call, and every field pays it.
		for name, sub in properties.items():
			check = self.expression(sub, "v")
			if name in required:
				lines += [
					f"if {name!r} not in x: return False",
					f"v = x[{name!r}]",
					f"if not {check}: return False",
				]
			elif _nullable_scalar(sub):
				plain = self.expression(_without_null(sub), "v")
				lines += [
					f"if {name!r} in x:",
					f"\tv = x[{name!r}]",
					f"\tif v is not None and not {plain}: return False",
				]
			elif check != "True":
				lines += [f"if {name!r} in x:", f"\tv = x[{name!r}]", f"\tif not {check}: return False"]
		patterns = [
			(self.matcher(p), self.expression(sub, "v"))
			for p, sub in (node.get("patternProperties") or {}).items()
		]
		lines.extend(self.extras(properties, patterns, node.get("additionalProperties", True)))
		for key, needed in self.dependencies(node).items():
			if isinstance(needed, list):
				lines.extend(f"if {key!r} in x and {n!r} not in x: return False" for n in needed)
			else:
				lines.append(f"if {key!r} in x and not {self.expression(needed, 'x')}: return False")
		if "propertyNames" in node:
			lines.append(
				f"for k in x:\n\t\tif not {self.expression(node['propertyNames'], 'k')}: return False"
			)
		return lines

	def matcher(self, pattern: str) -> str:
		"""Returns an expression testing the key ``k`` against a patternProperties pattern."""
		if re.fullmatch(r"\^[A-Za-z0-9_\-]+", pattern):
			# "^_" and the like: a prefix test gives re.search's answer without the regex engine.
			return f"k.startswith({pattern[1:]!r})"
		return f"{self.constant(re.compile(pattern))}.search(k) is not None"

	def extras(self, properties: Mapping, patterns: list[tuple[str, str]], extra: Any) -> list[str]:
		"""Returns the lines checking patternProperties and additionalProperties over the keys of x."""
		known = self.constant(frozenset(properties))
		extra_check = self.expression(extra, "v")
		if all(check == "True" for _, check in patterns):
			# Patterns only decide which keys are extras; listed keys skip the pattern tests.
			if extra_check == "True":
				return []
			matched = " or ".join(m for m, _ in patterns) or "False"
			if extra_check == "False":
				# The set test runs in C; the loop only runs when some key is not listed.
				return [
					f"if not {known}.issuperset(x):",
					f"\tfor k in x:\n\t\t\tif k not in {known} and not ({matched}): return False",
				]
			return [
				"for k, v in x.items():",
				f"\tif k not in {known} and not ({matched}) and not {extra_check}: return False",
			]
		lines = ["for k, v in x.items():", "\tmatched = False"]
		for pattern, check in patterns:
			lines += [f"\tif {pattern}:", "\t\tmatched = True", f"\t\tif not {check}: return False"]
		if extra_check != "True":
			lines.append(f"\tif not matched and k not in {known} and not {extra_check}: return False")
		return lines

	def dependencies(self, node: Mapping) -> dict[str, Any]:
		found: dict[str, Any] = {}
		if self.draft07:
			found.update(node.get("dependencies") or {})
		else:
			found.update(node.get("dependentRequired") or {})
			found.update(node.get("dependentSchemas") or {})
		return found

	def array_body(self, node: Mapping) -> list[str]:
		lines = []
		if "minItems" in node:
			lines.append(f"if len(x) < {node['minItems']!r}: return False")
		if "maxItems" in node:
			lines.append(f"if len(x) > {node['maxItems']!r}: return False")
		items = node.get("items", True)
		if self.draft07:
			prefix, rest = (
				(items, node.get("additionalItems", True)) if isinstance(items, list) else ([], items)
			)
		else:
			prefix, rest = node.get("prefixItems") or [], items
		for index, sub in enumerate(prefix):
			lines.append(f"if len(x) > {index} and not {self.expression(sub, f'x[{index}]')}: return False")
		rest_check = self.expression(rest, "v")
		if rest_check != "True":
			start = f"x[{len(prefix)}:]" if prefix else "x"
			lines.append(f"for v in {start}:\n\t\tif not {rest_check}: return False")
		if node.get("uniqueItems"):
			lines.append("if not _unique(x): return False")
		return lines


_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_BUILTINS = ("isinstance", "len", "any", "sum", "str", "int", "float")


def _bind_globals(function: str, namespace: Mapping[str, Any]) -> str:
	"""Turns the constants and builtins a generated function uses into default arguments.

	Local names are the fastest lookups CPython has; the checks run for every event, so the
	few nanoseconds per field add up. Generated functions are left global (they may recurse).
	"""
	header, _, body = function.partition("\n")
	used = set(_NAME.findall(body))
	names = sorted(n for n in used if (n in namespace and not n.startswith("_f")) or n in _BUILTINS)
	if names:
		header = header.replace("):", ", " + ", ".join(f"{n}={n}" for n in names) + "):", 1)
	return f"{header}\n{body}"


def compile_check(schema: Any, format_checker: FormatChecker | None = None) -> Check | None:
	"""Returns a function telling whether a value matches ``schema``, or None when it cannot be compiled."""
	compiler = _Compiler(schema, format_checker)
	try:
		entry = compiler.function(schema)
	except _Unsupported:
		return None
	source = "\n".join(_bind_globals(f, compiler.namespace) for f in compiler.sources)
	try:
		code = compile(source, "<schema check>", "exec")
	except (SyntaxError, RecursionError, MemoryError):
		return None  # nested beyond what Python's parser takes ("too many nested parentheses")
	exec(code, compiler.namespace)
	return compiler.namespace[entry]
