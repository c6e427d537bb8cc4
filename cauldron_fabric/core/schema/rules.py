"""The named differences between two JSON Schemas and whether each one breaks compatibility.

The names and verdicts are Confluent Schema Registry's for JSON Schema, so admins who know its
documentation read the same words here. A difference is always named as the change from the
*writer's* schema to the *reader's* schema: under BACKWARD that is the change from the old
version to the new one; under FORWARD the new schema writes and the old one reads, so the names
describe the change seen from the new schema back to the old one (as Confluent does).

One deliberate deviation: a property made required with a ``default`` is still incompatible
(Confluent allows it), because the fabric validates events as they are and never fills defaults.
``ENUM_VALUE_REJECTED``, ``FORMAT_ADDED``/``FORMAT_CHANGED``, ``KEYWORD_NOT_ANALYSED`` and
``NESTING_TOO_DEEP`` are the fabric's own: the fabric checks formats, and a keyword or a depth the
checker cannot reason about must not pass silently.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
	"""A named kind of difference: whether readers can still read what writers wrote, and why."""

	name: str
	compatible: bool
	summary: str


_COMPATIBLE = {
	"DESCRIPTION_CHANGED": "documentation only",
	"TITLE_CHANGED": "documentation only",
	"DEFAULT_CHANGED": "defaults are not applied by validation",
	"TYPE_EXTENDED": "the reader accepts more types (for example integer to number)",
	"MAX_LENGTH_INCREASED": "longer strings are accepted",
	"MAX_LENGTH_REMOVED": "any length is accepted",
	"MIN_LENGTH_DECREASED": "shorter strings are accepted",
	"MIN_LENGTH_REMOVED": "any length is accepted",
	"PATTERN_REMOVED": "any string is accepted",
	"FORMAT_REMOVED": "any string is accepted",
	"MAXIMUM_INCREASED": "larger numbers are accepted",
	"MAXIMUM_REMOVED": "any number is accepted",
	"MINIMUM_DECREASED": "smaller numbers are accepted",
	"MINIMUM_REMOVED": "any number is accepted",
	"EXCLUSIVE_MAXIMUM_INCREASED": "larger numbers are accepted",
	"EXCLUSIVE_MAXIMUM_REMOVED": "any number is accepted",
	"EXCLUSIVE_MINIMUM_DECREASED": "smaller numbers are accepted",
	"EXCLUSIVE_MINIMUM_REMOVED": "any number is accepted",
	"MULTIPLE_OF_REDUCED": "every multiple of the old step is a multiple of the new one",
	"MULTIPLE_OF_REMOVED": "any number is accepted",
	"REQUIRED_ATTRIBUTE_REMOVED": "the reader no longer needs the property",
	"DEPENDENCY_ARRAY_NARROWED": "fewer co-required properties",
	"DEPENDENCY_ARRAY_REMOVED": "no co-required properties",
	"MAX_PROPERTIES_INCREASED": "more properties are accepted",
	"MAX_PROPERTIES_REMOVED": "any number of properties is accepted",
	"MIN_PROPERTIES_DECREASED": "fewer properties are accepted",
	"MIN_PROPERTIES_REMOVED": "any number of properties is accepted",
	"ADDITIONAL_PROPERTIES_ADDED": "the reader opened its content model",
	"ADDITIONAL_PROPERTIES_EXTENDED": "extra properties of any shape are accepted",
	"PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL": "the new property accepts anything",
	"OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL": "the writer could never send the property",
	"PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL": "the writer could never send the property",
	"PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL": "the reader accepts the property as an extra",
	"PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "the writer's extras fit the new property",
	"PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "the reader's extras accept the property",
	"MAX_ITEMS_INCREASED": "longer arrays are accepted",
	"MAX_ITEMS_REMOVED": "arrays of any length are accepted",
	"MIN_ITEMS_DECREASED": "shorter arrays are accepted",
	"MIN_ITEMS_REMOVED": "arrays of any length are accepted",
	"UNIQUE_ITEMS_REMOVED": "duplicates are accepted",
	"ADDITIONAL_ITEMS_ADDED": "the reader accepts extra items",
	"ADDITIONAL_ITEMS_EXTENDED": "extra items of any shape are accepted",
	"ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL": "the new item accepts anything",
	"ITEM_ADDED_TO_CLOSED_CONTENT_MODEL": "the writer could never send the item",
	"ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL": "the writer could never send the item",
	"ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL": "the reader accepts the item as an extra",
	"ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "the writer's extra items fit the new item",
	"ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "the reader's extra items accept the item",
	"ENUM_ARRAY_EXTENDED": "the reader accepts more values",
	"COMBINED_TYPE_EXTENDED": "oneOf/allOf relaxed to anyOf",
	"SUM_TYPE_EXTENDED": "the reader accepts more alternatives",
	"NOT_TYPE_NARROWED": "the reader excludes less",
}
_INCOMPATIBLE = {
	"TYPE_NARROWED": "the reader accepts fewer types or values than the writer sends",
	"TYPE_CHANGED": "the reader accepts none of the writer's types",
	"MAX_LENGTH_ADDED": "a length ceiling the writer does not respect",
	"MAX_LENGTH_DECREASED": "a lower length ceiling than the writer's",
	"MIN_LENGTH_ADDED": "a length floor the writer does not respect",
	"MIN_LENGTH_INCREASED": "a higher length floor than the writer's",
	"PATTERN_ADDED": "a pattern the writer does not respect",
	"PATTERN_CHANGED": "a different pattern than the writer's",
	"FORMAT_ADDED": "a format the writer does not respect",
	"FORMAT_CHANGED": "a different format than the writer's",
	"MAXIMUM_ADDED": "a ceiling the writer does not respect",
	"MAXIMUM_DECREASED": "a lower ceiling than the writer's",
	"MINIMUM_ADDED": "a floor the writer does not respect",
	"MINIMUM_INCREASED": "a higher floor than the writer's",
	"EXCLUSIVE_MAXIMUM_ADDED": "a ceiling the writer does not respect",
	"EXCLUSIVE_MAXIMUM_DECREASED": "a lower ceiling than the writer's",
	"EXCLUSIVE_MINIMUM_ADDED": "a floor the writer does not respect",
	"EXCLUSIVE_MINIMUM_INCREASED": "a higher floor than the writer's",
	"MULTIPLE_OF_ADDED": "a step the writer does not respect",
	"MULTIPLE_OF_EXPANDED": "a coarser step than the writer's",
	"MULTIPLE_OF_CHANGED": "a step that the writer's numbers need not meet",
	"REQUIRED_ATTRIBUTE_ADDED": "the reader needs a property the writer may omit",
	"DEPENDENCY_ARRAY_ADDED": "co-required properties the writer may omit",
	"DEPENDENCY_ARRAY_EXTENDED": "more co-required properties than the writer sends",
	"DEPENDENCY_ARRAY_CHANGED": "different co-required properties",
	"MAX_PROPERTIES_ADDED": "a property count ceiling the writer does not respect",
	"MAX_PROPERTIES_DECREASED": "a lower property count ceiling",
	"MIN_PROPERTIES_ADDED": "a property count floor the writer does not respect",
	"MIN_PROPERTIES_INCREASED": "a higher property count floor",
	"ADDITIONAL_PROPERTIES_REMOVED": "the reader closed its content model; the writer may send extras",
	"ADDITIONAL_PROPERTIES_NARROWED": "the reader constrains extras the writer sends freely",
	"OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL": "the writer may already send the property, of any shape",
	"REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL": "the writer may omit the property or send any shape",
	"REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL": "the writer never sends the property",
	"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL": "the writer sends a property the reader refuses",
	"PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "the writer's extras do not fit the property",
	"PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "the reader's extras refuse the property",
	"MAX_ITEMS_ADDED": "an array length ceiling the writer does not respect",
	"MAX_ITEMS_DECREASED": "a lower array length ceiling",
	"MIN_ITEMS_ADDED": "an array length floor the writer does not respect",
	"MIN_ITEMS_INCREASED": "a higher array length floor",
	"UNIQUE_ITEMS_ADDED": "the writer may send duplicates",
	"ADDITIONAL_ITEMS_REMOVED": "the reader refuses extra items the writer may send",
	"ADDITIONAL_ITEMS_NARROWED": "the reader constrains extra items the writer sends freely",
	"ITEM_ADDED_TO_OPEN_CONTENT_MODEL": "the writer may already send the item, of any shape",
	"ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL": "the writer sends an item the reader refuses",
	"ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "the writer's extra items do not fit",
	"ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL": "the reader's extra items refuse the item",
	"ENUM_ARRAY_NARROWED": "the reader accepts fewer values",
	"ENUM_ARRAY_CHANGED": "the reader accepts different values",
	"ENUM_VALUE_REJECTED": "a value the writer may send fails another rule of the reader",
	"COMBINED_TYPE_CHANGED": "anyOf/allOf tightened to oneOf or allOf",
	"SUM_TYPE_NARROWED": "an alternative of the writer matches no alternative of the reader",
	"NOT_TYPE_EXTENDED": "the reader excludes values the writer may send",
	"KEYWORD_NOT_ANALYSED": "the reader changes a keyword the checker cannot prove safe",
	"NESTING_TOO_DEEP": "the schemas lead deeper than the checker compares, so nothing there is proven safe",
}

RULES: dict[str, Rule] = {
	**{name: Rule(name, True, summary) for name, summary in _COMPATIBLE.items()},
	**{name: Rule(name, False, summary) for name, summary in _INCOMPATIBLE.items()},
}


def rule(name: str) -> Rule:
	"""Returns the rule of that name; raises KeyError for a name the table does not know."""
	return RULES[name]
