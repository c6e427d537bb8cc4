"""Verdicts on allOf, oneOf, type lists and patternProperties: each breaking row proves its break
(the old schema accepts the witness, the new one refuses it)."""

import pytest
from test_schema_compatibility import D7, INT, MISSING, N, S, check_case, field, obj, v

NULL = {"type": "null"}

CASES = [
	# allOf parts that set one keyword differently: merging kept only the last part's value
	(
		"allOf-two-patterns",
		[field({"type": "string", "pattern": "b$"})],
		field({"allOf": [{"type": "string", "pattern": "^a"}, {"pattern": "b$"}]}),
		"BACKWARD",
		False,
		"PATTERN_CHANGED",
		v("xb"),
	),
	(
		"allOf-two-multiples",
		[field({"type": "integer", "multipleOf": 3})],
		field({"allOf": [{"type": "integer", "multipleOf": 2}, {"multipleOf": 3}]}),
		"BACKWARD",
		False,
		"MULTIPLE_OF_CHANGED",
		v(3),
	),
	(
		"allOf-two-consts",
		[field({"const": "b"})],
		field({"allOf": [{"const": "a"}, {"const": "b"}]}),
		"BACKWARD",
		False,
		"TYPE_NARROWED",
		v("b"),
	),
	(
		"allOf-closed-part",
		[obj({"a": S, "b": S}, closed=True)],
		{"allOf": [obj({"a": S}, closed=True), obj({"b": S})]},
		"BACKWARD",
		False,
		"TYPE_NARROWED",
		{"b": "x"},
	),
	(
		"allOf-draft07-tuples",
		[{"$schema": D7, "type": "array", "items": [S]}],
		{"$schema": D7, "allOf": [{"type": "array", "items": [S]}, {"items": [{**S, "maxLength": 3}]}]},
		"BACKWARD",
		False,
		"KEYWORD_NOT_ANALYSED",
		["abcd"],
	),
	# oneOf refuses a value that matches two alternatives
	(
		"int-to-overlapping-oneOf",
		[field(INT)],
		field({"oneOf": [INT, N]}),
		"BACKWARD",
		False,
		"SUM_TYPE_NARROWED",
		v(1),
	),
	# a type list is a union: the same values as anyOf/oneOf of its types
	(
		"type-list-to-anyOf",
		[field({"type": ["string", "null"]})],
		field({"anyOf": [S, NULL]}),
		"FULL",
		True,
		None,
		MISSING,
	),
	(
		"type-list-to-oneOf",
		[field({"type": ["string", "integer"]})],
		field({"oneOf": [S, INT]}),
		"BACKWARD",
		True,
		None,
		MISSING,
	),
	# patternProperties also apply to listed properties
	(
		"pattern-over-listed-property",
		[obj({"x_a": S}, closed=True)],
		obj({"x_a": S}, closed=True, patternProperties={"^x_": INT}),
		"BACKWARD",
		False,
		"TYPE_CHANGED",
		{"x_a": "text"},
	),
]


@pytest.mark.parametrize(
	"previous, new, mode, compatible, rule, witness", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_combinator_and_pattern_rules(previous, new, mode, compatible, rule, witness):
	check_case(previous, new, mode, compatible, rule, witness)
