"""Hostile schemas and references: refused with a reason, never a RecursionError or ValueError.

Found by fuzzing the registry API: schemas nested a hundred levels (or deeper through $ref)
exhausted Python's stack in every recursive walk, "²" passed str.isdigit and failed int(), and
patterns ending in "$" took a trailing newline. Each walk is run here with part of the stack
already used, as a web request uses it, so passing does not depend on running near the top.
"""

import ast
import sys
import threading
import time

import pytest

from cauldron_fabric.core.envelope import json_depth
from cauldron_fabric.core.schema import check_compatibility, check_schema, python_source, typescript_source
from cauldron_fabric.core.schema.depth import (
	MAX_SCHEMA_DEPTH,
	MAX_WALK_DEPTH,
	json_text_depth,
	schema_depth,
)
from cauldron_fabric.core.schema.dialect import FORMAT_CHECKER, inline_refs, resolve_ref, to_draft07
from cauldron_fabric.core.schema.errors import InvalidSchema
from cauldron_fabric.core.schema.fastpath import compile_check
from cauldron_fabric.core.schema.identity import schema_fingerprint, with_registry_id
from cauldron_fabric.core.schema.validation import (
	CompiledSchema,
	data_schema_uri,
	json_path,
	parse_data_schema_uri,
)

# Frames a request has used before the registry checks a schema, with room to spare (a request
# through Frappe's test client starts about 20 deep, one under gunicorn a few dozen).
REQUEST_FRAMES = 250

# One level of each keyword that nests a schema, wrapping the schema ``s``.
NESTINGS = {
	"properties": lambda s: {"type": "object", "properties": {"a": s}},
	"items": lambda s: {"type": "array", "items": s},
	"prefixItems": lambda s: {"type": "array", "prefixItems": [s]},
	"additionalProperties": lambda s: {"type": "object", "additionalProperties": s},
	"patternProperties": lambda s: {"type": "object", "patternProperties": {"^a": s}},
	"anyOf": lambda s: {"anyOf": [s, {"type": "null"}]},
	"oneOf": lambda s: {"oneOf": [s, {"type": "null"}]},
	"allOf": lambda s: {"allOf": [s]},
	"not": lambda s: {"not": s},
	"if-then": lambda s: {"if": {"type": "object"}, "then": s},
	"dependentSchemas": lambda s: {"dependentSchemas": {"a": s}},
	"nullable-object": lambda s: {"type": ["object", "null"], "properties": {"a": s}},
}


def nested(kind: str, levels: int, leaf=None) -> dict:
	schema = leaf or {"type": "string"}
	for _ in range(levels):
		schema = NESTINGS[kind](schema)
	return schema


def deepest(kind: str, leaf=None) -> dict:
	"""Returns the deepest schema of one kind of nesting that the limit still accepts."""
	schema = leaf or {"type": "string"}
	while schema_depth(NESTINGS[kind](schema)) <= MAX_SCHEMA_DEPTH:
		schema = NESTINGS[kind](schema)
	return schema


def chain(length: int, step=lambda ref: {"type": "object", "properties": {"n": ref}}) -> dict:
	"""Returns a shallow document whose definitions refer each to the next, ``length`` of them."""
	defs = {f"d{i}": step({"$ref": f"#/$defs/d{i + 1}"}) for i in range(length)}
	defs[f"d{length}"] = {"type": "string"}
	return {"$defs": defs, "$ref": "#/$defs/d0"}


def cycle(length: int) -> dict:
	"""Returns a recursive schema going round ``length`` definitions (a linked list of objects)."""
	defs = {
		f"d{i}": {"type": "object", "properties": {"n": {"$ref": f"#/$defs/d{(i + 1) % length}"}}}
		for i in range(length)
	}
	return {"$defs": defs, "$ref": "#/$defs/d0"}


def with_stack_used(frames: int, call):
	"""Runs ``call`` below ``frames`` frames of recursion, as it would run inside a request."""

	def descend(left: int):
		return call() if left == 0 else descend(left - 1)

	return descend(frames)


def test_the_limit_is_a_sane_number_of_levels():
	assert 32 <= MAX_SCHEMA_DEPTH <= 100
	assert MAX_WALK_DEPTH >= MAX_SCHEMA_DEPTH


@pytest.mark.parametrize("levels", [96, 300, 5000])
def test_a_schema_nested_too_deeply_is_refused_saying_how_deep_and_the_limit(levels):
	schema = nested("properties", levels)
	depth = schema_depth(schema)
	for check in (
		lambda: check_schema(schema),
		lambda: check_compatibility(schema, [{"type": "object"}], "BACKWARD"),
		lambda: CompiledSchema(schema),
	):
		with pytest.raises(InvalidSchema) as caught:
			with_stack_used(REQUEST_FRAMES, check)
		(problem,) = caught.value.problems
		assert f"{depth} levels deep" in problem and f"at most {MAX_SCHEMA_DEPTH}" in problem


def test_a_too_deep_earlier_version_is_refused_naming_the_version():
	deep = nested("items", MAX_SCHEMA_DEPTH + 1)
	with pytest.raises(InvalidSchema) as caught:
		check_compatibility({"type": "array"}, [deep], "BACKWARD", versions=[3])
	assert caught.value.problems[0].startswith("version 3: The schema nests objects and arrays")


@pytest.mark.parametrize("kind", sorted(NESTINGS))
def test_one_level_past_the_limit_is_refused_for_every_nesting_keyword(kind):
	schema = NESTINGS[kind](deepest(kind))
	with pytest.raises(InvalidSchema, match=f"at most {MAX_SCHEMA_DEPTH} levels"):
		with_stack_used(REQUEST_FRAMES, lambda: check_schema(schema))


@pytest.mark.parametrize("kind", sorted(NESTINGS))
def test_a_schema_at_the_limit_goes_through_every_walk_inside_a_request(kind):
	# The comparison descends to the bottom: the leaves differ, so it must look at them.
	new, old = deepest(kind, {"type": "integer"}), deepest(kind, {"type": "number"})

	def every_walk():
		check_schema(new)
		result = check_compatibility(new, [old], "FULL")
		compiled = CompiledSchema(new)
		compiled.is_valid({})
		to_draft07(new)
		python_source({"deep.schema": new})
		typescript_source({"deep.schema": new})
		return result

	assert not with_stack_used(REQUEST_FRAMES, every_walk).compatible


def test_deeply_nested_data_inside_a_schema_counts_too():
	# enum, const and default are compared value by value (recursively) by the checker.
	value: list = []
	for _ in range(MAX_SCHEMA_DEPTH + 10):
		value = [value]
	with pytest.raises(InvalidSchema, match="levels deep"):
		check_schema({"const": value})


def test_a_chain_of_references_deeper_than_the_limit_is_refused():
	# Shallow as a document, deep as every walk that follows $ref sees it.
	schema = chain(40)
	assert json_depth(schema) < 10
	with pytest.raises(InvalidSchema, match=f"at most {MAX_SCHEMA_DEPTH} levels"):
		with_stack_used(REQUEST_FRAMES, lambda: check_schema(schema))
	in_place = chain(70, step=lambda ref: {"allOf": [ref]})
	with pytest.raises(InvalidSchema, match="counting a \\$ref as its target"):
		check_schema(in_place)


def test_references_that_fan_out_are_measured_once():
	# Each definition names the next twice: walking every path would take 2**200 steps.
	defs = {
		f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]} for i in range(200)
	}
	defs["d200"] = {"type": "string"}
	started = time.monotonic()
	with pytest.raises(InvalidSchema, match="levels deep"):
		check_schema({"$defs": defs, "$ref": "#/$defs/d0"})
	assert time.monotonic() - started < 2


def test_recursive_schemas_stay_accepted():
	tree = {
		"type": "object",
		"properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
		"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"type": "array", "items": {"$ref": "#/$defs/a"}}},
	}
	check_schema(tree)
	check_schema(cycle(5))
	assert schema_depth(tree) < 10


def test_two_recursive_schemas_that_never_meet_again_stop_the_comparison_with_a_reason():
	# Cycles of 19 and 20 definitions meet in a new pair at every step for 380 levels.
	writer, reader = cycle(19), cycle(20)
	check_schema(writer)
	check_schema(reader)
	result = with_stack_used(REQUEST_FRAMES, lambda: check_compatibility(reader, [writer], "FULL"))
	assert not result.compatible
	assert {r.rule for r in result.reasons} == {"NESTING_TOO_DEEP"}
	assert f"more than {MAX_WALK_DEPTH} levels deep" in result.reasons[0].message


def test_a_deep_schema_registered_before_the_limit_still_validates_and_documents_without_a_crash():
	# Registered versions are loaded as trusted (not checked again): their walks must stop themselves.
	old = chain(300, step=lambda ref: {"allOf": [ref]})
	assert compile_check(old, FORMAT_CHECKER) is None  # left to jsonschema, not a RecursionError
	compiled = with_stack_used(REQUEST_FRAMES, lambda: CompiledSchema(old, trusted=True))
	assert [v.rule for v in compiled.violations({})] == ["depth"]
	with pytest.raises(InvalidSchema, match=f"more than {MAX_WALK_DEPTH} levels deep"):
		inline_refs(old)


@pytest.mark.parametrize("index", ["\u00b2", "\u0663", "\uff11", "1 ", "-1", "+1"])
def test_a_pointer_index_of_other_digits_points_to_nothing(index):
	# str.isdigit() takes "²" and "٣", and int() then refused them: a ValueError (500).
	schema = {"prefixItems": [{"type": "string"}, {"type": "integer"}], "$ref": f"#/prefixItems/{index}"}
	with pytest.raises(InvalidSchema, match="points to nothing"):
		resolve_ref(schema, f"#/prefixItems/{index}")
	with pytest.raises(InvalidSchema, match="points to nothing"):
		check_schema(schema)
	assert resolve_ref(schema, "#/prefixItems/1") == {"type": "integer"}


def test_a_trailing_newline_is_no_registry_reference():
	with pytest.raises(ValueError):
		parse_data_schema_uri("urn:cauldron:schema:sales_order.created:1\n")
	with pytest.raises(ValueError):
		data_schema_uri("sales_order.created\n", 1)
	assert parse_data_schema_uri("urn:cauldron:schema:sales_order.created:1") == ("sales_order.created", 1)
	# A registry $id names the version and is no content; one with a newline is content.
	named = {"$id": "urn:cauldron:schema:a.b:1", "type": "object"}
	newline = {"$id": "urn:cauldron:schema:a.b:1\n", "type": "object"}
	assert schema_fingerprint(named) == schema_fingerprint({"type": "object"})
	assert schema_fingerprint(newline) != schema_fingerprint({"type": "object"})
	assert with_registry_id(newline, "urn:cauldron:schema:a.b:2") == newline


@pytest.mark.parametrize(
	"value", ["2024-05-01T10:00:00Z\n", "\uff12024-05-01T10:00:00Z", "2024-05-01T10:00:00.\u0661Z"]
)
def test_a_date_time_with_a_newline_or_other_digits_is_refused(value):
	compiled = CompiledSchema({"type": "string", "format": "date-time"})
	assert compiled.is_valid("2024-05-01T10:00:00Z")
	assert not compiled.is_valid(value)
	assert [v.rule for v in compiled.violations(value)] == ["format"]


def test_a_key_with_a_newline_is_no_identifier_in_paths_or_generated_code():
	assert json_path(["qty\n"]) == "$['qty\\n']"
	schema = {"type": "object", "properties": {"qty\n": {"type": "integer"}}}
	ast.parse(python_source({"odd.event": schema}))  # the functional form quotes the key


def test_json_text_depth_reads_brackets_outside_strings():
	assert json_text_depth('{"a": "[[[{{", "b": [[1], {"c": "\\"]["}]}') == 3
	assert json_text_depth("[" * 5000 + "]" * 5000) == 5000
	assert json_depth({"a": [{"b": 1}]}) == 3 and json_depth("text") == 0


def test_the_depth_check_holds_with_little_stack_left():
	# It is a loop: a thread whose stack is nearly used up can still measure 100,000 levels.
	schema = nested("items", 100_000)
	result = {}

	def measure():
		result["depth"] = with_stack_used(sys.getrecursionlimit() - 50, lambda: schema_depth(schema))

	thread = threading.Thread(target=measure)
	thread.start()
	thread.join()
	assert result["depth"] == 100_001
