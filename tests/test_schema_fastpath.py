"""The compiled check agrees with jsonschema on every verdict, for every keyword it compiles.

Instances are generated (seeded, so failures reproduce) from a pool of awkward values and by
mutating the catalog's examples; each verdict of the compiled check is compared with
jsonschema's own, using the same format checker.
"""

import copy
import random

import pytest

from cauldron_fabric.core.schema.catalog import load_catalog
from cauldron_fabric.core.schema.dialect import FORMAT_CHECKER, validator_class
from cauldron_fabric.core.schema.fastpath import compile_check

D7 = "http://json-schema.org/draft-07/schema#"
POOL = [
	None,
	True,
	False,
	0,
	1,
	-1,
	2,
	1.0,
	1.5,
	0.3,
	10**20,
	"",
	"a",
	"EUR",
	"ünï",
	"2026-03-02",
	"2026-02-30",
	"2026-03-02T10:00:00Z",
	"2026-03-02 10:00:00",
	"jane@example.com",
	"x" * 150,
	[],
	[1],
	[1, 1.0],
	[True, 1],
	["a", "b"],
	{},
	{"a": 1},
	{"a": "x", "b": 2},
	{"key": None},
]
KEYWORD_SCHEMAS = [
	{"type": ["integer", "null"]},
	{"type": "number", "minimum": 0, "exclusiveMaximum": 2},
	{"type": "integer", "multipleOf": 2},
	{"multipleOf": 0.1},
	{"enum": [1, "1", True, None, [1], {"a": 1}]},
	{"enum": [0, 1, 2]},
	{"enum": ["a", "b"]},
	{"const": {"a": 1}},
	{"type": "string", "minLength": 2, "maxLength": 3},
	{"pattern": "^[A-Z]{3}$"},
	{"format": "date"},
	{"format": "date-time"},
	{"format": "email"},
	{"required": ["a"], "properties": {"a": {"type": "integer"}, "b": False}},
	{"properties": {"a": True}, "additionalProperties": {"type": "string"}},
	{"patternProperties": {"^a": {"type": "integer"}}, "additionalProperties": False},
	{"minProperties": 1, "maxProperties": 1},
	{"dependentRequired": {"a": ["b"]}},
	{"dependentSchemas": {"a": {"required": ["b"]}}},
	{"propertyNames": {"maxLength": 1}},
	{"type": "array", "prefixItems": [{"type": "integer"}], "items": False},
	{"type": "array", "items": {"type": ["integer", "string"]}, "minItems": 1, "maxItems": 2},
	{"uniqueItems": True},
	{"allOf": [{"type": "number"}, {"minimum": 1}]},
	{"anyOf": [{"type": "string"}, {"type": "integer"}]},
	{"oneOf": [{"type": "number"}, {"type": "integer"}]},
	{"not": {"type": "array"}},
	{"if": {"type": "integer"}, "then": {"minimum": 1}, "else": {"type": "string"}},
	{"$defs": {"n": {"type": "integer"}}, "$ref": "#/$defs/n", "minimum": 1},
	{"type": ["object", "integer"], "properties": {"a": {"$ref": "#"}}, "maximum": 5},
	{"$schema": D7, "type": "array", "items": [{"type": "string"}], "additionalItems": {"type": "integer"}},
	{"$schema": D7, "definitions": {"s": {"type": "string"}}, "$ref": "#/definitions/s", "minLength": 5},
	{"$schema": D7, "dependencies": {"a": ["b"], "b": {"required": ["c"]}}},
	{"type": "object", "x-frappe-fieldtype": "Data", "unknownKeyword": {"type": "string"}},
]


def random_value(rng: random.Random, depth: int = 0):
	if depth < 2 and rng.random() < 0.3:
		if rng.random() < 0.5:
			return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
		return {rng.choice("abc"): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
	return copy.deepcopy(rng.choice(POOL))


def mutate(rng: random.Random, value):
	"""Returns a copy of ``value`` with one random change somewhere inside it."""
	value = copy.deepcopy(value)
	holder, key, node = None, None, value
	while isinstance(node, dict | list) and node and rng.random() < 0.7:
		holder = node
		key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
		node = node[key]
	choice = rng.random()
	if holder is None:
		return random_value(rng)
	if choice < 0.5:
		holder[key] = random_value(rng)
	elif choice < 0.7 and isinstance(holder, dict):
		del holder[key]
	elif isinstance(holder, dict):
		holder[rng.choice(["extra", "_user_tags", "x"])] = random_value(rng)
	else:
		holder.append(copy.deepcopy(holder[key]))
	return value


def assert_agrees(schema, instances):
	check = compile_check(schema, FORMAT_CHECKER)
	assert check is not None, "the schema should compile"
	reference = validator_class(schema)(schema, format_checker=FORMAT_CHECKER)
	verdicts = []
	for instance in instances:
		expected = reference.is_valid(instance)
		assert check(instance) is expected, (schema, instance)
		verdicts.append(expected)
	return verdicts


@pytest.mark.parametrize("schema", KEYWORD_SCHEMAS, ids=range(len(KEYWORD_SCHEMAS)))
def test_keyword_verdicts_match_jsonschema(schema):
	rng = random.Random(1234)
	instances = POOL + [random_value(rng) for _ in range(300)]
	verdicts = assert_agrees(schema, instances)
	assert True in verdicts and False in verdicts, "a check that never varies proves nothing"


def test_catalog_verdicts_match_jsonschema_on_mutated_examples():
	rng = random.Random(99)
	valid = invalid = 0
	for entry in load_catalog():
		instances = list(entry.examples)
		instances += [mutate(rng, rng.choice(entry.examples)) for _ in range(60)]
		verdicts = assert_agrees(entry.schema, instances)
		valid, invalid = valid + verdicts.count(True), invalid + verdicts.count(False)
	assert valid > 300 and invalid > 1000, (valid, invalid)


def test_unsupported_keywords_are_left_to_jsonschema():
	for schema in (
		{"unevaluatedProperties": False},
		{"contains": {"type": "integer"}},
		{"properties": {"a": {"$id": "urn:x", "type": "string"}}},
		{"$ref": "https://example.com/other.json"},
	):
		assert compile_check(schema, FORMAT_CHECKER) is None
