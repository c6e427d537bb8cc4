"""Compatibility rules for values and modes: enums, limits, formats, anyOf/oneOf, transitive modes.

Rows read (id, old versions oldest first, new schema, mode, compatible, rule, witness); see
``test_schema_compatibility`` for how a row is checked.
"""

import pytest
import test_schema_compatibility
import test_schema_compatibility_objects
from test_schema_compatibility import D7, INT, MISSING, N, S, check_case, field, obj, v

from cauldron_fabric.core.schema.compatibility import CompatibilityMode
from cauldron_fabric.core.schema.rules import RULES

CASES = [
	# enums
	(
		"enum-extended",
		[field(S, enum=["a", "b"])],
		field(S, enum=["a", "b", "c"]),
		"BACKWARD",
		True,
		"ENUM_ARRAY_EXTENDED",
		MISSING,
	),
	(
		"enum-narrowed",
		[field(S, enum=["a", "b"])],
		field(S, enum=["a"]),
		"BACKWARD",
		False,
		"ENUM_ARRAY_NARROWED",
		v("b"),
	),
	(
		"enum-extended-forward",
		[field(S, enum=["a", "b"])],
		field(S, enum=["a", "b", "c"]),
		"FORWARD",
		False,
		"ENUM_ARRAY_NARROWED",
		v("c"),
	),
	(
		"enum-changed",
		[field(S, enum=["a", "b"])],
		field(S, enum=["a", "c"]),
		"BACKWARD",
		False,
		"ENUM_ARRAY_CHANGED",
		v("b"),
	),
	("enum-added", [field(S)], field(S, enum=["a"]), "BACKWARD", False, "ENUM_ARRAY_NARROWED", v("zzz")),
	(
		"const-changed",
		[field({"const": 1})],
		field({"const": 2}),
		"BACKWARD",
		False,
		"ENUM_ARRAY_CHANGED",
		v(1),
	),
	# numeric limits
	("max-added", [field(N)], field(N, maximum=10), "BACKWARD", False, "MAXIMUM_ADDED", v(11)),
	(
		"max-increased",
		[field(N, maximum=10)],
		field(N, maximum=20),
		"BACKWARD",
		True,
		"MAXIMUM_INCREASED",
		MISSING,
	),
	(
		"min-increased",
		[field(N, minimum=0)],
		field(N, minimum=5),
		"BACKWARD",
		False,
		"MINIMUM_INCREASED",
		v(1),
	),
	(
		"min-decreased-forward",
		[field(N, minimum=5)],
		field(N, minimum=0),
		"FORWARD",
		False,
		"MINIMUM_INCREASED",
		v(1),
	),
	(
		"xmin-added",
		[field(N)],
		field(N, exclusiveMinimum=0),
		"BACKWARD",
		False,
		"EXCLUSIVE_MINIMUM_ADDED",
		v(0),
	),
	(
		"xmin-vs-min",
		[field(N, minimum=0)],
		field(N, exclusiveMinimum=0),
		"BACKWARD",
		False,
		"EXCLUSIVE_MINIMUM_INCREASED",
		v(0),
	),
	(
		"xmax-removed",
		[field(N, exclusiveMaximum=9)],
		field(N),
		"BACKWARD",
		True,
		"EXCLUSIVE_MAXIMUM_REMOVED",
		MISSING,
	),
	(
		"multiple-expanded",
		[field(INT, multipleOf=2)],
		field(INT, multipleOf=4),
		"BACKWARD",
		False,
		"MULTIPLE_OF_EXPANDED",
		v(6),
	),
	(
		"multiple-reduced",
		[field(INT, multipleOf=4)],
		field(INT, multipleOf=2),
		"BACKWARD",
		True,
		"MULTIPLE_OF_REDUCED",
		MISSING,
	),
	(
		"multiple-changed",
		[field(INT, multipleOf=2)],
		field(INT, multipleOf=3),
		"BACKWARD",
		False,
		"MULTIPLE_OF_CHANGED",
		v(4),
	),
	("multiple-added", [field(N)], field(N, multipleOf=0.5), "BACKWARD", False, "MULTIPLE_OF_ADDED", v(0.3)),
	# length and count limits, pattern, format
	(
		"maxlength-decreased",
		[field(S, maxLength=10)],
		field(S, maxLength=5),
		"BACKWARD",
		False,
		"MAX_LENGTH_DECREASED",
		v("abcdefg"),
	),
	("maxlength-added", [field(S)], field(S, maxLength=3), "BACKWARD", False, "MAX_LENGTH_ADDED", v("abcd")),
	("minlength-removed", [field(S, minLength=2)], field(S), "BACKWARD", True, "MIN_LENGTH_REMOVED", MISSING),
	(
		"minitems-increased",
		[field({"type": "array", "minItems": 1})],
		field({"type": "array", "minItems": 2}),
		"BACKWARD",
		False,
		"MIN_ITEMS_INCREASED",
		v([1]),
	),
	(
		"maxitems-increased",
		[field({"type": "array", "maxItems": 2})],
		field({"type": "array", "maxItems": 3}),
		"BACKWARD",
		True,
		"MAX_ITEMS_INCREASED",
		MISSING,
	),
	(
		"minproperties-added",
		[obj({})],
		obj({}, minProperties=1),
		"BACKWARD",
		False,
		"MIN_PROPERTIES_ADDED",
		{},
	),
	(
		"pattern-added",
		[field(S)],
		field(S, pattern="^[A-Z]{3}$"),
		"BACKWARD",
		False,
		"PATTERN_ADDED",
		v("eur"),
	),
	(
		"format-changed",
		[field(S, format="date")],
		field(S, format="email"),
		"BACKWARD",
		False,
		"FORMAT_CHANGED",
		v("2026-01-02"),
	),
	(
		"unique-added",
		[field({"type": "array"})],
		field({"type": "array", "uniqueItems": True}),
		"BACKWARD",
		False,
		"UNIQUE_ITEMS_ADDED",
		v([1, 1]),
	),
	# anyOf / oneOf / not / keywords the checker does not reason about
	(
		"anyof-null-added",
		[field(S)],
		field({"anyOf": [S, {"type": "null"}]}),
		"BACKWARD",
		True,
		"SUM_TYPE_EXTENDED",
		MISSING,
	),
	(
		"anyof-branch-removed",
		[field({"anyOf": [S, INT]})],
		field({"anyOf": [S]}),
		"BACKWARD",
		False,
		"SUM_TYPE_NARROWED",
		v(3),
	),
	(
		"oneof-to-anyof",
		[field({"oneOf": [S, INT]})],
		field({"anyOf": [S, INT]}),
		"BACKWARD",
		True,
		"COMBINED_TYPE_EXTENDED",
		MISSING,
	),
	(
		"anyof-to-oneof",
		[field({"anyOf": [N, INT]})],
		field({"oneOf": [N, INT]}),
		"BACKWARD",
		False,
		"COMBINED_TYPE_CHANGED",
		v(3),
	),
	(
		"not-added",
		[field(S)],
		field(S, **{"not": {"const": "x"}}),
		"BACKWARD",
		False,
		"NOT_TYPE_EXTENDED",
		v("x"),
	),
	(
		"dependency-added",
		[obj({"a": S, "b": S})],
		obj({"a": S, "b": S}, dependentRequired={"a": ["b"]}),
		"BACKWARD",
		False,
		"DEPENDENCY_ARRAY_ADDED",
		{"a": "x"},
	),
	(
		"if-then-added",
		[field(S)],
		field(S, **{"if": {"const": "a"}, "then": {"maxLength": 0}}),
		"BACKWARD",
		False,
		"KEYWORD_NOT_ANALYSED",
		v("a"),
	),
	(
		"draft07-schema-dependency-added",
		[{"$schema": D7, "type": "object"}],
		{"$schema": D7, "type": "object", "dependencies": {"a": {"required": ["b"]}}},
		"BACKWARD",
		False,
		"KEYWORD_NOT_ANALYSED",
		{"a": 1},
	),
	# transitive modes: the latest version is fine, an older one is not
	(
		"backward-latest-only",
		[field(N, maximum=20), field(N, maximum=10)],
		field(N, maximum=15),
		"BACKWARD",
		True,
		None,
		MISSING,
	),
	(
		"backward-transitive",
		[field(N, maximum=20), field(N, maximum=10)],
		field(N, maximum=15),
		"BACKWARD_TRANSITIVE",
		False,
		"MAXIMUM_DECREASED",
		v(18),
	),
	(
		"forward-latest-only",
		[field(N, maximum=10), field(N, maximum=20)],
		field(N, maximum=15),
		"FORWARD",
		True,
		None,
		MISSING,
	),
	(
		"forward-transitive",
		[field(N, maximum=10), field(N, maximum=20)],
		field(N, maximum=15),
		"FORWARD_TRANSITIVE",
		False,
		"MAXIMUM_DECREASED",
		v(12),
	),
	(
		"full-transitive",
		[field(S, maxLength=10), field(S, maxLength=10)],
		field(S, maxLength=10),
		"FULL_TRANSITIVE",
		True,
		None,
		MISSING,
	),
	("none-mode", [field(S)], field(INT), "NONE", True, None, MISSING),
]


@pytest.mark.parametrize(
	"previous, new, mode, compatible, rule, witness", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_value_and_mode_rules(previous, new, mode, compatible, rule, witness):
	check_case(previous, new, mode, compatible, rule, witness)


def test_the_tables_cover_every_mode_with_at_least_forty_cases():
	every = CASES + test_schema_compatibility.CASES + test_schema_compatibility_objects.CASES
	assert len(every) >= 40 and len({c[0] for c in every}) == len(every)
	assert {c[3] for c in every} == {m.value for m in CompatibilityMode}
	assert all(c[5] is None or c[5] in RULES for c in every)
	assert sum(1 for c in every if not c[4] and c[6] is not MISSING) >= 30
