"""Compatibility rules, case by case: tables of (old versions, new schema, mode) and the verdict.

The table is split over three modules: type and required rules here, objects and nesting in
``test_schema_compatibility_objects``, values and modes in ``test_schema_compatibility_scalars``.
Each row names the rule it exercises; a breaking row also carries a *witness*, an event that
the writer's schema accepts and the reader's refuses, so the expected verdict is checked
against real validation and not only against the checker.
"""

import json

import pytest

from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.schema.compatibility import (
	CompatibilityMode,
	check_compatibility,
	parse_mode,
)
from cauldron_fabric.core.schema.dialect import FORMAT_CHECKER, validator_class
from cauldron_fabric.core.schema.errors import IncompatibleSchema, InvalidSchema

S, INT, N = {"type": "string"}, {"type": "integer"}, {"type": "number"}
MISSING = object()


def obj(props=None, required=(), closed=None, **extra):
	"""An object schema; closed=True adds additionalProperties: false, closed=False says true."""
	schema = {"type": "object", "properties": props or {}, **extra}
	if required:
		schema["required"] = list(required)
	if closed is not None:
		schema["additionalProperties"] = not closed
	return schema


def field(schema, **extra):
	"""A one-property object {"v": schema} (open content model)."""
	return obj({"v": {**schema, **extra}})


def v(value):
	return {"v": value}


D7 = "http://json-schema.org/draft-07/schema#"
# (id, old versions oldest first, new schema, mode, compatible, rule, witness)
CASES = [
	# types
	("int-to-number", [field(INT)], field(N), "BACKWARD", True, "TYPE_EXTENDED", MISSING),
	("number-to-int", [field(N)], field(INT), "BACKWARD", False, "TYPE_NARROWED", v(1.5)),
	("int-to-number-forward", [field(INT)], field(N), "FORWARD", False, "TYPE_NARROWED", v(2.5)),
	("string-to-int", [field(S)], field(INT), "BACKWARD", False, "TYPE_CHANGED", v("a")),
	(
		"drop-null",
		[field({"type": ["string", "null"]})],
		field(S),
		"BACKWARD",
		False,
		"TYPE_NARROWED",
		v(None),
	),
	("add-null", [field(S)], field({"type": ["string", "null"]}), "BACKWARD", True, "TYPE_EXTENDED", MISSING),
	(
		"add-null-full",
		[field(S)],
		field({"type": ["string", "null"]}),
		"FULL",
		False,
		"TYPE_NARROWED",
		v(None),
	),
	("any-to-object", [True], {"type": "object"}, "BACKWARD", False, "TYPE_NARROWED", "text"),
	# required
	("require-existing", [field(S)], obj({"v": S}, ["v"]), "BACKWARD", False, "REQUIRED_ATTRIBUTE_ADDED", {}),
	("unrequire", [obj({"v": S}, ["v"])], field(S), "BACKWARD", True, "REQUIRED_ATTRIBUTE_REMOVED", MISSING),
	("unrequire-forward", [obj({"v": S}, ["v"])], field(S), "FORWARD", False, "REQUIRED_ATTRIBUTE_ADDED", {}),
	(
		"require-with-default",
		[field(S)],
		obj({"v": {**S, "default": "x"}}, ["v"]),
		"BACKWARD",
		False,
		"REQUIRED_ATTRIBUTE_ADDED",
		{},
	),
]


def accepts(schema, value) -> bool:
	"""Validates with jsonschema itself (and the registry's format checker), not with the fast path."""
	return validator_class(schema)(schema, format_checker=FORMAT_CHECKER).is_valid(value)


def _writer_and_reader(case_mode: str, old: object, new: object):
	return (new, old) if case_mode.startswith("FORWARD") else (old, new)


def check_case(previous, new, mode, compatible, rule, witness):
	"""Checks one row of a compatibility table (see the module docstring)."""
	result = check_compatibility(new, previous, mode)
	assert result.compatible is compatible, [r.message for r in result.reasons]
	assert result.mode is CompatibilityMode(mode)
	if compatible:
		assert result.reasons == ()
		if rule:
			assert rule in {c.rule for c in result.changes}
	else:
		assert rule in {r.rule for r in result.reasons}
	if witness is not MISSING:
		# The event that proves the break: the writer accepts it, the reader refuses it.
		target = previous[0] if "TRANSITIVE" in mode else previous[-1]
		writer, reader = _writer_and_reader(mode, target, new)
		if mode == "FULL":
			writer, reader = new, previous[-1]
		assert accepts(writer, witness)
		assert not accepts(reader, witness)


@pytest.mark.parametrize(
	"previous, new, mode, compatible, rule, witness", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_type_and_required_rules(previous, new, mode, compatible, rule, witness):
	check_case(previous, new, mode, compatible, rule, witness)


def test_a_dry_run_returns_every_reason_not_only_the_first():
	old = obj({"qty": N, "uom": S, "note": S}, closed=True)
	new = obj({"qty": INT, "uom": {**S, "maxLength": 3}, "code": S}, ["code"], closed=True)
	result = check_compatibility(new, [old], "BACKWARD")
	found = {(r.rule, r.path) for r in result.reasons}
	assert found == {
		("TYPE_NARROWED", "#/properties/qty/type"),
		("MAX_LENGTH_ADDED", "#/properties/uom/maxLength"),
		("PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL", "#/properties/note"),
		("REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", "#/properties/code"),
	}


def test_messages_say_what_changed_and_whom_it_breaks():
	result = check_compatibility(field(S, maxLength=3), [field(S), field(S)], "FULL_TRANSITIVE")
	backward = [r for r in result.reasons if r.direction == "backward"]
	assert {r.version for r in backward} == {1, 2}
	message = backward[0].message
	assert "caps the string length at 3" in message
	assert "producers still on version 1" in message and "consumers on the new schema" in message
	assert result.checked_versions == (1, 2)


def test_forward_reasons_name_the_old_version_as_reader():
	result = check_compatibility(field(S, enum=["a", "b"]), [field(S, enum=["a"])], "FORWARD", versions=[7])
	(reason,) = result.reasons
	assert reason.version == 7 and reason.direction == "forward"
	assert 'version 7 no longer accepts ["b"]' in reason.message
	assert "consumers still on version 7" in reason.message


def test_recursive_schemas_are_compared_without_looping():
	def tree(leaf):
		node = {
			"type": "object",
			"properties": {"value": leaf, "children": {"type": "array", "items": {"$ref": "#"}}},
		}
		return node

	assert check_compatibility(tree(INT), [tree(INT)], "FULL").compatible
	result = check_compatibility(tree(S), [tree(INT)], "BACKWARD")
	assert [r.rule for r in result.reasons] == ["TYPE_CHANGED"]


def test_an_invalid_new_schema_is_refused_with_every_problem():
	with pytest.raises(InvalidSchema) as caught:
		check_compatibility({"type": "strng", "properties": {"a": {"$ref": "#/$defs/none"}}}, [], "BACKWARD")
	problems = " | ".join(caught.value.problems)
	assert "'strng' is not valid" in problems and "#/$defs/none" in problems


def test_an_invalid_earlier_version_is_named():
	with pytest.raises(InvalidSchema, match="version 1: "):
		check_compatibility(field(S), [{"type": 5}], "BACKWARD")


LOOPS = [
	{"$ref": "#/$defs/x", "$defs": {"x": {"allOf": [{"$ref": "#/$defs/x"}]}}},
	{"$ref": "#/$defs/x", "$defs": {"x": {"$ref": "#/$defs/y"}, "y": {"anyOf": [S, {"$ref": "#/$defs/x"}]}}},
	{"type": "object", "not": {"if": {"$ref": "#"}}},
]


@pytest.mark.parametrize("schema", LOOPS)
def test_a_reference_looping_without_descending_into_the_value_is_refused(schema):
	# No value can be validated against it (jsonschema recurses forever), nor compared.
	for new, old in ((schema, []), ({}, [schema])):
		with pytest.raises(InvalidSchema, match="comes back to itself"):
			check_compatibility(new, old, "BACKWARD")


def test_a_reference_looping_through_properties_or_items_is_a_tree_and_kept():
	tree = {
		"$ref": "#/$defs/node",
		"$defs": {"node": {"properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
	}
	assert check_compatibility(tree, [tree], "FULL").compatible


def test_unsupported_drafts_are_refused_clearly():
	with pytest.raises(InvalidSchema, match=r"draft-04.*not supported"):
		check_compatibility({"$schema": "http://json-schema.org/draft-04/schema#"}, [], "NONE")


def test_modes_parse_from_text_and_unknown_ones_are_refused():
	assert parse_mode("backward_transitive") is CompatibilityMode.BACKWARD_TRANSITIVE
	assert parse_mode(None) is CompatibilityMode.BACKWARD
	with pytest.raises(ConfigurationError, match="Use one of BACKWARD"):
		parse_mode("SIDEWAYS")


def test_results_serialise_and_feed_the_refusal_error():
	result = check_compatibility(field(INT), [field(S)], "BACKWARD")
	body = json.loads(json.dumps(result.to_dict()))
	assert body["compatible"] is False and body["reasons"][0]["rule"] == "TYPE_CHANGED"
	error = IncompatibleSchema("user.login", result)
	assert (
		not error.retryable
		and "not BACKWARD compatible" in str(error)
		and "#/properties/v/type" in str(error)
	)
