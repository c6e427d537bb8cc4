"""Small facts about JSON Schemas: which types they admit, whether they accept anything, merging.

Shared by the compatibility comparison (``diff``, ``diff_containers``) and the code generators.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cauldron_fabric.core.schema.identity import canonical_json, json_equal

ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string", "integer"})
ANNOTATIONS = frozenset(
	{
		"title",
		"description",
		"default",
		"examples",
		"$comment",
		"deprecated",
		"readOnly",
		"writeOnly",
		"$schema",
		"$id",
		"$anchor",
		"$defs",
		"definitions",
		"contentMediaType",
		"contentEncoding",
	}
)


def is_empty(schema: Any) -> bool:
	"""Tells whether a schema accepts every value (``true``, ``{}`` or annotations only)."""
	if schema is True:
		return True
	return isinstance(schema, Mapping) and all(k in ANNOTATIONS or k.startswith("x-") for k in schema)


def types_of(schema: Mapping[str, Any]) -> frozenset[str]:
	"""Returns the JSON types a schema admits by its ``type`` keyword (all of them when absent)."""
	declared = schema.get("type")
	if declared is None:
		return ALL_TYPES
	return frozenset([declared] if isinstance(declared, str) else declared)


def covers(types: frozenset[str], json_type: str) -> bool:
	"""Tells whether ``types`` admits every value of ``json_type`` (``number`` admits ``integer``)."""
	return json_type in types or (json_type == "integer" and "number" in types)


def show(value: Any) -> str:
	"""Returns a short JSON rendering of a value for messages."""
	text = canonical_json(value)
	return text if len(text) <= 80 else text[:77] + "..."


def writer_bound(schema: Mapping, bound: str) -> tuple[float, bool] | None:
	"""Returns the tightest (value, exclusive) bound a schema guarantees on one side, or None."""
	keys = (
		(("minimum", False), ("exclusiveMinimum", True))
		if bound == "lower"
		else (("maximum", False), ("exclusiveMaximum", True))
	)
	found = [(schema[k], exclusive) for k, exclusive in keys if isinstance(schema.get(k), int | float)]
	if not found:
		return None
	return max(found) if bound == "lower" else min(found, key=lambda b: (b[0], not b[1]))


def branches(schema: Mapping) -> tuple[str | None, list[Any]]:
	"""Returns ``("anyOf"|"oneOf", alternatives)`` with the schema's other keywords merged into each."""
	for kind in ("oneOf", "anyOf"):
		if isinstance(schema.get(kind), list):
			base = {k: v for k, v in schema.items() if k != kind and k not in ANNOTATIONS}
			return kind, [merge(base, branch) if base else branch for branch in schema[kind]]
	return None, [schema]


def enum_values(schema: Mapping) -> list[Any] | None:
	"""Returns the values ``enum``/``const`` allow, or None when the schema has neither."""
	values = list(schema["enum"]) if isinstance(schema.get("enum"), list) else None
	if "const" in schema:
		values = (
			[v for v in values if json_equal(v, schema["const"])] if values is not None else [schema["const"]]
		)
	return values


def finite_values(schema: Mapping) -> list[Any] | None:
	"""Returns every value a schema allows when there are few (enum, const, boolean, null)."""
	values = enum_values(schema)
	if values is None and "type" in schema and types_of(schema) <= {"boolean", "null"}:
		values = [
			v for v, t in ((True, "boolean"), (False, "boolean"), (None, "null")) if t in types_of(schema)
		]
	return values


def contains(values: list[Any], value: Any) -> bool:
	"""Tells whether ``value`` is among ``values`` by JSON equality."""
	return any(json_equal(value, v) for v in values)


def merge(left: Any, right: Any) -> Any:
	"""Returns one schema that demands what both demand (the ``allOf`` of two schemas, flattened).

	A keyword both sides set differently and that cannot be combined into one value (two
	patterns, two formats, two ``oneOf`` lists...) is kept from both: the right one goes into a
	residual ``allOf``, so the result never accepts more than the two schemas together.
	"""
	if left is False or right is False:
		return False
	if left is True or left == {}:
		return right
	if right is True or right == {}:
		return left
	result = dict(left)
	residual: list[Any] = []
	for key, value in right.items():
		if key not in result:
			result[key] = value
		elif key in ANNOTATIONS or key.startswith("x-"):
			result[key] = value
		elif key == "properties":
			continue  # below, once both sides' content models are known
		elif json_equal(result[key], value):
			continue
		elif key == "required":
			result[key] = list(dict.fromkeys([*result[key], *value]))
		elif key == "type":
			result[key] = sorted(_type_intersection(types_of(result), types_of(right)))
		elif key in ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties"):
			result[key] = max(result[key], value)
		elif key in ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties"):
			result[key] = min(result[key], value)
		elif key == "enum":
			result[key] = [v for v in result[key] if contains(value, v)]
		elif key == "const":
			return False
		elif key == "allOf":
			result[key] = [*result[key], *value]
		elif key in ("additionalProperties", "items") and _is_schema(result[key]) and _is_schema(value):
			result[key] = merge(result[key], value)
		else:
			residual.append({key: value})
	if "properties" in left or "properties" in right:
		# A property one side lists is checked by the other side's patterns or additionalProperties.
		mine, theirs = left.get("properties") or {}, right.get("properties") or {}
		result["properties"] = {
			name: merge(
				mine[name] if name in mine else _unlisted(left, name),
				theirs[name] if name in theirs else _unlisted(right, name),
			)
			for name in [*mine, *(n for n in theirs if n not in mine)]
		}
	if residual:
		result["allOf"] = [*result.get("allOf", []), *residual]
	return result


def _is_schema(value: Any) -> bool:
	return isinstance(value, bool | Mapping)


def _unlisted(schema: Mapping, name: str) -> Any:
	"""Returns what ``schema`` demands of a property it does not list (patterns, else additionalProperties)."""
	patterns = [s for p, s in (schema.get("patternProperties") or {}).items() if re.search(p, name)]
	if patterns:
		result: Any = True
		for pattern_schema in patterns:
			result = merge(result, pattern_schema)
		return result
	return schema.get("additionalProperties", schema.get("unevaluatedProperties", True))


def _type_intersection(left: frozenset[str], right: frozenset[str]) -> set[str]:
	return {t for t in left if covers(right, t)} | {t for t in right if covers(left, t)}
