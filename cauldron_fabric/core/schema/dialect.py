"""Which JSON Schema drafts the registry accepts, how a schema is checked, and local ``$ref`` handling.

Registered schemas are draft 2020-12 (the default when ``$schema`` is absent) or draft-07, and
self-contained: every ``$ref`` points inside the same document (``#/$defs/...``,
``#/definitions/...`` or a ``$anchor``), so a schema version means the same thing forever.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from jsonschema import FormatChecker, validators
from jsonschema.protocols import Validator

from cauldron_fabric.core.schema.depth import MAX_WALK_DEPTH, NOWHERE, check_depth, pointed_at, too_deep
from cauldron_fabric.core.schema.errors import InvalidSchema
from cauldron_fabric.core.schema.identity import schema_fingerprint

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
_DIALECTS = {
	"https://json-schema.org/draft/2020-12/schema": DRAFT_2020_12,
	"http://json-schema.org/draft-07/schema": DRAFT_07,
}
# Where subschemas sit: maps of name to schema, lists of schemas, single schemas. Anything else
# (enum, const, default, examples...) is data, so a "$ref" key inside it is not a reference.
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
SCHEMA_SINGLE = frozenset(
	{
		"additionalProperties",
		"additionalItems",
		"unevaluatedProperties",
		"unevaluatedItems",
		"not",
		"if",
		"then",
		"else",
		"contains",
		"propertyNames",
	}
)
# Where subschemas apply to the value itself, not to a property or item of it: a "$ref" that
# comes back to itself through these alone never reaches a smaller value, so it never ends.
IN_PLACE_LISTS = frozenset({"allOf", "anyOf", "oneOf"})
IN_PLACE_SINGLE = frozenset({"not", "if", "then", "else"})
IN_PLACE_MAPS = frozenset({"dependentSchemas", "dependencies"})
# ASCII digits and \Z: "\d" takes other scripts' digits and "$" a trailing newline.
_RFC3339 = re.compile(
	r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


def _is_rfc3339(value: object) -> bool:
	if not isinstance(value, str):
		return True
	if not _RFC3339.match(value):
		return False
	text = value.upper().replace(" ", "T").replace("Z", "+00:00")
	head, dot, rest = text.partition(".")
	if dot:
		# fromisoformat before Python 3.11 takes 3 or 6 fraction digits only.
		digits = re.match(r"[0-9]+", rest).group(0)
		text = head + "." + (digits + "000000")[:6] + rest[len(digits) :]
	try:
		dt.datetime.fromisoformat(text)
	except ValueError:
		return False
	return True


def make_format_checker() -> FormatChecker:
	"""Returns the format checker of the registry: jsonschema's, with an RFC 3339 ``date-time``.

	jsonschema checks ``date-time`` only when an optional package is installed; the registry
	checks it with the standard library so validation gives the same answer on every machine.
	"""
	checker = FormatChecker()
	checker.checks("date-time")(_is_rfc3339)
	return checker


FORMAT_CHECKER = make_format_checker()


def dialect_of(schema: Any) -> str:
	"""Returns the normalised ``$schema`` of a schema; raises InvalidSchema for another draft."""
	declared = schema.get("$schema") if isinstance(schema, Mapping) else None
	if declared is None:
		return DRAFT_2020_12
	key = str(declared).rstrip("#")
	if key.startswith("https://json-schema.org/draft-07"):
		key = key.replace("https://", "http://", 1)
	if key not in _DIALECTS:
		raise InvalidSchema(
			[f"'$schema' {declared!r} is not supported; use {DRAFT_2020_12!r} or {DRAFT_07!r}"]
		)
	return _DIALECTS[key]


def validator_class(schema: Any) -> type[Validator]:
	"""Returns the jsonschema validator class of the schema's draft."""
	dialect = dialect_of(schema)
	default = validators.Draft7Validator if dialect == DRAFT_07 else validators.Draft202012Validator
	return validators.validator_for({"$schema": dialect}, default=default)


def check_schema(schema: Any) -> None:
	"""Raises InvalidSchema listing every defect when ``schema`` is not a usable, self-contained schema.

	A schema nested deeper than ``depth.MAX_SCHEMA_DEPTH`` is refused before it is walked. A
	schema found usable once is remembered by its fingerprint: checking it against the
	meta-schema takes tens of milliseconds for a large DocType's schema, hashing it well under one.
	"""
	if isinstance(schema, bool):
		return
	if not isinstance(schema, Mapping):
		raise InvalidSchema([f"a schema must be a JSON object (or true/false), got {type(schema).__name__}"])
	# Before anything recursive (hashing included): too deep a schema would exhaust the stack.
	check_depth(schema)
	fingerprint = schema_fingerprint(schema)
	if fingerprint in _USABLE:
		return
	_check_against_meta_schema(schema)
	_USABLE[fingerprint] = True
	while len(_USABLE) > USABLE_REMEMBERED:
		_USABLE.popitem(last=False)


# Fingerprints of schemas that passed check_schema, oldest first.
_USABLE: OrderedDict[str, bool] = OrderedDict()
USABLE_REMEMBERED = 4096


def _check_against_meta_schema(schema: Mapping[str, Any]) -> None:
	cls = validator_class(schema)
	problems = [
		f"{_pointer(error.absolute_path)}: {error.message}"
		for error in cls(cls.META_SCHEMA, format_checker=FORMAT_CHECKER).iter_errors(schema)
	]
	for location, node in iter_subschemas(schema):
		nested_id = node.get("$id") if isinstance(node, Mapping) and location != "#" else None
		if isinstance(nested_id, str) and not nested_id.startswith("#"):
			# A nested $id is a new base URI: jsonschema resolves the "#/..." references under it
			# inside that subschema, not in the document as resolve_ref does.
			problems.append(f"{location}: a nested $id ({nested_id!r}) is not supported; remove it")
	for location, ref in iter_refs(schema):
		try:
			resolve_ref(schema, ref)
		except InvalidSchema as exc:
			problems.append(f"{location}: {exc.problems[0]}")
	if not problems:
		problems.extend(_looping_refs(schema))
	if problems:
		raise InvalidSchema(problems)


def _looping_refs(schema: Any) -> list[str]:
	"""Returns a problem for each ``$ref`` that comes back to itself without descending into the value.

	``{"$defs": {"x": {"allOf": [{"$ref": "#/$defs/x"}]}}}`` checks a value against itself
	forever: jsonschema and the compatibility checker would die of RecursionError on it.
	"""
	following: dict[str, set[str]] = {}
	for _, ref in iter_refs(schema):
		following.setdefault(ref, set(_in_place_refs(resolve_ref(schema, ref))))
	problems = []
	for location, ref in iter_refs(schema):
		reached, pending = set(), list(following.get(ref, ()))
		while pending and ref not in reached:
			current = pending.pop()
			if current not in reached:
				reached.add(current)
				pending.extend(following.get(current, ()))
		if ref in reached:
			problems.append(
				f"{location}: $ref {ref!r} comes back to itself without descending into a property "
				"or item, so no value can be checked against it; recurse through properties or items"
			)
	return problems


def _in_place_refs(node: Any) -> Iterator[str]:
	"""Yields the ``$ref`` values that apply to the same value as ``node`` (see IN_PLACE_LISTS)."""
	if not isinstance(node, Mapping):
		return
	if isinstance(node.get("$ref"), str):
		yield node["$ref"]
	for key, value in node.items():
		if key in IN_PLACE_LISTS and isinstance(value, list):
			subschemas = value
		elif key in IN_PLACE_SINGLE:
			subschemas = [value]
		elif key in IN_PLACE_MAPS and isinstance(value, Mapping):
			subschemas = [sub for sub in value.values() if not isinstance(sub, list)]
		else:
			continue
		for sub in subschemas:
			yield from _in_place_refs(sub)


def _pointer(parts) -> str:
	return "#/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts) if parts else "#"


def map_subschemas(node: Mapping[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
	"""Returns a copy of a schema object with ``fn`` applied to each direct subschema."""
	result: dict[str, Any] = {}
	for key, value in node.items():
		if key in SCHEMA_MAPS and isinstance(value, Mapping):
			result[key] = {name: fn(sub) for name, sub in value.items()}
		elif key in SCHEMA_LISTS and isinstance(value, list):
			result[key] = [fn(sub) for sub in value]
		elif key in SCHEMA_SINGLE or (key == "items" and not isinstance(value, list)):
			result[key] = fn(value)
		elif key in ("items", "dependencies"):
			result[key] = _map_mixed(value, fn)
		else:
			result[key] = copy.deepcopy(value)
	return result


def _map_mixed(value: Any, fn: Callable[[Any], Any]) -> Any:
	# draft-07 "items" may be a list of schemas; "dependencies" maps to schemas or name lists.
	if isinstance(value, list):
		return [fn(sub) for sub in value]
	if isinstance(value, Mapping):
		return {k: copy.deepcopy(v) if isinstance(v, list) else fn(v) for k, v in value.items()}
	return copy.deepcopy(value)


def iter_subschemas(node: Any, location: str = "#") -> Iterator[tuple[str, Any]]:
	"""Yields ``(where, subschema)`` for a schema and every schema nested in it, depth first."""
	yield location, node
	if not isinstance(node, Mapping):
		return
	found: list[tuple[str, Any]] = []

	def collect(path: str) -> Callable[[Any], Any]:
		def keep(sub: Any) -> Any:
			found.append((path, sub))
			return sub

		return keep

	for key, value in node.items():
		if key in SCHEMA_MAPS and isinstance(value, Mapping):
			found.extend((f"{location}/{key}/{_escape(name)}", sub) for name, sub in value.items())
		elif key in SCHEMA_LISTS or (key == "items" and isinstance(value, list)):
			found.extend((f"{location}/{key}/{i}", sub) for i, sub in enumerate(value or []))
		elif key in SCHEMA_SINGLE or key == "items":
			found.append((f"{location}/{key}", value))
		elif key == "dependencies" and isinstance(value, Mapping):
			found.extend(
				(f"{location}/{key}/{_escape(name)}", sub)
				for name, sub in value.items()
				if not isinstance(sub, list)
			)
	for path, sub in found:
		yield from iter_subschemas(sub, path)


def _escape(name: str) -> str:
	return str(name).replace("~", "~0").replace("/", "~1")


def iter_refs(schema: Any) -> Iterator[tuple[str, str]]:
	"""Yields ``(where, $ref)`` for every reference in a schema (data such as ``enum`` is skipped)."""
	for location, node in iter_subschemas(schema):
		if isinstance(node, Mapping):
			for key in ("$ref", "$dynamicRef"):
				if isinstance(node.get(key), str):
					yield location, node[key]


def resolve_ref(root: Any, ref: str) -> Any:
	"""Returns the subschema a local ``$ref`` points to; raises InvalidSchema for others."""
	if not ref.startswith("#"):
		raise InvalidSchema([f"$ref {ref!r} points outside the document; inline it under $defs"])
	fragment = unquote(ref[1:])
	if fragment and not fragment.startswith("/"):
		found = _find_anchor(root, fragment)
		if found is None:
			raise InvalidSchema([f"$ref {ref!r} names no $anchor of the document"])
		return found
	node = pointed_at(root, fragment)
	if node is NOWHERE:
		raise InvalidSchema([f"$ref {ref!r} points to nothing in the document"])
	return node


def _find_anchor(root: Any, anchor: str) -> Any:
	for _, node in iter_subschemas(root):
		if isinstance(node, Mapping) and node.get("$anchor") == anchor:
			return node
	return None


# Left by ``inline_refs(schema, mark_recursion=True)``: the schema a followed ``$ref`` led to
# carries RECURSION_TARGET (the reference), and a reference back into it, which cannot be
# inlined, becomes ``{RECURSION_MARK: reference}``. Code generators turn the pair into a
# named type that refers to itself. Annotation-style keys, so ``shapes.merge`` keeps them.
RECURSION_TARGET = "x-cauldron-recursion-target"
RECURSION_MARK = "x-cauldron-recursion"


def inline_refs(schema: Any, *, mark_recursion: bool = False) -> Any:
	"""Returns a copy with every local ``$ref`` replaced by its target and ``$defs`` dropped.

	Tools that read one schema at a time (AsyncAPI payloads, code generators) need this,
	because a ``#/$defs/...`` reference means something else once the schema is embedded.
	Raises InvalidSchema for a recursive reference, which cannot be inlined, unless
	``mark_recursion`` asks for the markers above instead.
	"""
	if mark_recursion and isinstance(schema, Mapping):
		return {**_inline(schema, schema, ("#",), 1, True), RECURSION_TARGET: "#"}
	return _inline(schema, schema, (), 1, mark_recursion)


def _inline(node: Any, root: Any, active: tuple[str, ...], depth: int, mark: bool) -> Any:
	if not isinstance(node, Mapping):
		return node
	if depth > MAX_WALK_DEPTH:
		# check_schema measured the schema, but a schema registered before it did may be deeper.
		raise InvalidSchema([too_deep(None, "The schema", "following $ref")])
	result: dict[str, Any] = {}
	ref = node.get("$ref")
	if isinstance(ref, str):
		if ref in active:
			if not mark:
				raise InvalidSchema([f"$ref {ref!r} is recursive and cannot be inlined"])
			return {RECURSION_MARK: ref}
		target = _inline(resolve_ref(root, ref), root, (*active, ref), depth + 1, mark)
		if isinstance(target, bool):
			target = {} if target else {"not": {}}
		result.update(target)
		if mark:
			result[RECURSION_TARGET] = ref
	rest = {k: v for k, v in node.items() if k not in ("$ref", "$defs", "definitions")}
	if node is not root:
		rest.pop("$schema", None)
	result.update(map_subschemas(rest, lambda sub: _inline(sub, root, active, depth + 1, mark)))
	return result


def to_draft07(schema: Any) -> Any:
	"""Returns a self-contained draft-07 form of a schema (for AsyncAPI, whose schemas are draft-07)."""
	return _downgrade(inline_refs(schema))


def _downgrade(node: Any) -> Any:
	if not isinstance(node, Mapping):
		return node
	result = map_subschemas(
		{k: v for k, v in node.items() if k not in ("$schema", "$id", "$anchor")}, _downgrade
	)
	if "prefixItems" in result:
		tail = result.pop("items", None)
		result["items"] = result.pop("prefixItems")
		if tail is not None:
			result["additionalItems"] = tail
	for key in ("dependentRequired", "dependentSchemas"):
		if key in result:
			result.setdefault("dependencies", {}).update(result.pop(key))
	return result
