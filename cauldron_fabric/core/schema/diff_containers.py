"""Objects and arrays in the compatibility comparison: content models, properties, items, limits.

The content model decides what a property that only one side names means:

* **open** (no ``additionalProperties``, or ``true``): the schema accepts the property with any
  value, so a writer with an open model may already send a property the reader now constrains;
* **closed** (``additionalProperties: false``): the schema refuses the property;
* **partially open** (``additionalProperties`` is a schema, or ``patternProperties``): the
  property is checked against that schema.

Arrays follow the same logic for tuple positions (``prefixItems``, or draft-07 ``items`` lists)
and the items after them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cauldron_fabric.core.schema.shapes import is_empty, show

if TYPE_CHECKING:
	from cauldron_fabric.core.schema.diff import Comparison


def _escape(name: str) -> str:
	return str(name).replace("~", "~0").replace("/", "~1")


def _open(schema: Any) -> Any:
	"""Returns True for a schema accepting anything, else the schema itself (False stays False)."""
	return True if is_empty(schema) else schema


def extras(schema: Mapping) -> Any:
	"""Returns what a schema applies to properties it does not list: True, False or a schema."""
	for keyword in ("additionalProperties", "unevaluatedProperties"):
		if keyword in schema:
			return _open(schema[keyword])
	return True


def extra_for(schema: Mapping, name: str) -> Any:
	"""Returns what a schema applies to property ``name`` when it does not list it."""
	for pattern, subschema in (schema.get("patternProperties") or {}).items():
		if re.search(pattern, name):
			return _open(subschema)
	return extras(schema)


def compare_limits(
	cmp: Comparison, w: Mapping, r: Mapping, path: str, keywords: tuple[str, str], name: str, noun: str
) -> None:
	"""Compares a floor and a ceiling such as ``minLength``/``maxLength``."""
	low, high = keywords
	if high in r:
		limit, held = r[high], w.get(high)
		if held is None or held > limit:
			cmp.add(
				f"{path}/{high}",
				f"MAX_{name}_ADDED" if held is None else f"MAX_{name}_DECREASED",
				f"{cmp.reader.name} caps the {noun} at {limit} ({high}), but {cmp.writer.name} allows "
				+ ("any" if held is None else f"up to {held}"),
			)
		elif held < limit:
			cmp.add(f"{path}/{high}", f"MAX_{name}_INCREASED", f"{high} {held} became {limit}")
	elif high in w:
		cmp.add(f"{path}/{high}", f"MAX_{name}_REMOVED", f"{high} was dropped")
	if low in r:
		limit, held = r[low], w.get(low)
		if limit > (held or 0):
			cmp.add(
				f"{path}/{low}",
				f"MIN_{name}_ADDED" if held is None else f"MIN_{name}_INCREASED",
				f"{cmp.reader.name} requires a {noun} of at least {limit} ({low}), but "
				f"{cmp.writer.name} allows {held or 0}",
			)
		elif held is not None and held > limit:
			cmp.add(f"{path}/{low}", f"MIN_{name}_DECREASED", f"{low} {held} became {limit}")
	elif w.get(low):
		cmp.add(f"{path}/{low}", f"MIN_{name}_REMOVED", f"{low} was dropped")


def compare_objects(cmp: Comparison, w: Mapping, r: Mapping, path: str) -> None:
	"""Compares required properties, each property, the content model, counts and dependencies."""
	w_props, r_props = w.get("properties") or {}, r.get("properties") or {}
	w_required, r_required = list(w.get("required") or ()), list(r.get("required") or ())
	for name in r_required:
		if name not in w_required and not (name in r_props and name not in w_props):
			cmp.add(
				f"{path}/required/{_escape(name)}",
				"REQUIRED_ATTRIBUTE_ADDED",
				f"{cmp.reader.name} requires '{name}', which {cmp.writer.name} leaves optional",
			)
	for name in w_required:
		if name not in r_required:
			cmp.add(
				f"{path}/required/{_escape(name)}", "REQUIRED_ATTRIBUTE_REMOVED", f"'{name}' is optional now"
			)
	for name in [*w_props, *(n for n in r_props if n not in w_props)]:
		where = f"{path}/properties/{_escape(name)}"
		if name in w_props and name in r_props:
			cmp.compare(w_props[name], r_props[name], where)
			_compare_new_patterns(cmp, w, r, name, w_props[name], where)
		elif name in w_props:
			_property_removed(cmp, w_props[name], r, name, where)
		else:
			_property_added(cmp, w, r_props[name], name in r_required, name, where)
	_compare_extras(cmp, w, r, path)
	_compare_patterns(cmp, w, r, path)
	compare_limits(cmp, w, r, path, ("minProperties", "maxProperties"), "PROPERTIES", "number of properties")
	_compare_dependencies(cmp, w, r, path, set(w_required))


def _compare_new_patterns(
	cmp: Comparison, w: Mapping, r: Mapping, name: str, w_prop: Any, where: str
) -> None:
	"""A listed property must also match every reader pattern it matches that the writer lacks."""
	w_patterns = w.get("patternProperties") or {}
	for pattern, r_schema in (r.get("patternProperties") or {}).items():
		if pattern not in w_patterns and re.search(pattern, name):
			cmp.compare(w_prop, r_schema, f"{where}/patternProperties/{_escape(pattern)}")


def _property_removed(cmp: Comparison, w_prop: Any, r: Mapping, name: str, where: str) -> None:
	target = extra_for(r, name)
	if target is True:
		cmp.add(
			where,
			"PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
			f"'{name}' was removed; {cmp.reader.name} still accepts it as an unlisted property",
		)
	elif target is False:
		cmp.add(
			where,
			"PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL"
			if w_prop is False
			else "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
			f"{cmp.reader.name} removes '{name}' and refuses unlisted properties, but "
			f"{cmp.writer.name} defines '{name}'",
		)
	else:
		_covered(cmp, w_prop, target, where, "PROPERTY_REMOVED", f"{cmp.reader.name} removes '{name}' and")


def _property_added(cmp: Comparison, w: Mapping, r_prop: Any, required: bool, name: str, where: str) -> None:
	source = extra_for(w, name)
	kind = "required" if required else "optional"
	if source is True:
		if is_empty(r_prop) and not required:
			cmp.add(where, "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL", f"'{name}' was added")
			return
		cmp.add(
			where,
			f"{kind.upper()}_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
			f"{cmp.reader.name} adds the {kind} property '{name}' ({show(r_prop)}), but {cmp.writer.name} "
			f"has an open content model: its events may already carry '{name}' with any value"
			+ (" or leave it out" if required else ""),
		)
		return
	if source is not False:
		_covered(cmp, source, r_prop, where, "PROPERTY_ADDED", f"{cmp.reader.name} adds '{name}' and")
	if required:
		cmp.add(
			where,
			"REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
			f"{cmp.reader.name} adds the required property '{name}', which {cmp.writer.name} never "
			"sends (make it optional)",
		)
	elif source is False:
		cmp.add(where, "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL", f"the optional '{name}' was added")


def _covered(cmp: Comparison, w_schema: Any, r_schema: Any, where: str, prefix: str, what: str) -> None:
	found = cmp.probe(w_schema, r_schema, where)
	broken = [d for d in found if not d.compatible]
	if not broken:
		cmp.differences.extend(found)
		cmp.add(
			where, f"{prefix}_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", f"{what} the extras schema fits"
		)
		return
	cmp.add(
		where,
		f"{prefix}_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
		f"{what} the schema for unlisted properties does not fit: {broken[0].what}",
	)


def _compare_extras(cmp: Comparison, w: Mapping, r: Mapping, path: str) -> None:
	w_extra, r_extra = extras(w), extras(r)
	keyword = (
		"unevaluatedProperties" if "unevaluatedProperties" in r and "additionalProperties" not in r else None
	)
	where = f"{path}/{keyword or 'additionalProperties'}"
	if w_extra is not False and r_extra is False:
		cmp.add(
			where,
			"ADDITIONAL_PROPERTIES_REMOVED",
			f"{cmp.reader.name} refuses properties it does not list, but {cmp.writer.name} allows them",
		)
	elif w_extra is False and r_extra is not False:
		cmp.add(where, "ADDITIONAL_PROPERTIES_ADDED", f"{cmp.reader.name} accepts unlisted properties")
	elif w_extra is True and r_extra is not True:
		cmp.add(
			where,
			"ADDITIONAL_PROPERTIES_NARROWED",
			f"{cmp.reader.name} constrains unlisted properties to {show(r_extra)}, but "
			f"{cmp.writer.name} allows any",
		)
	elif r_extra is True and w_extra is not True:
		cmp.add(where, "ADDITIONAL_PROPERTIES_EXTENDED", "unlisted properties may be anything now")
	elif w_extra is not False:
		cmp.compare(w_extra, r_extra, where)


def _compare_patterns(cmp: Comparison, w: Mapping, r: Mapping, path: str) -> None:
	w_patterns, r_patterns = w.get("patternProperties") or {}, r.get("patternProperties") or {}
	for pattern, r_schema in r_patterns.items():
		where = f"{path}/patternProperties/{_escape(pattern)}"
		if pattern in w_patterns:
			cmp.compare(w_patterns[pattern], r_schema, where)
		elif extras(w) is not False:
			broken = [d for d in cmp.probe(extras(w), r_schema, where) if not d.compatible]
			if broken:
				cmp.add(
					where,
					"ADDITIONAL_PROPERTIES_NARROWED",
					f"{cmp.reader.name} constrains properties matching {pattern!r} to {show(r_schema)}, "
					f"but {cmp.writer.name} allows them as unlisted properties",
				)
	for pattern, w_schema in w_patterns.items():
		if pattern in r_patterns:
			continue
		where = f"{path}/patternProperties/{_escape(pattern)}"
		target = extras(r)
		if target is False and w_schema is not False:
			cmp.add(
				where,
				"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
				f"{cmp.reader.name} drops the pattern {pattern!r} and refuses unlisted properties, but "
				f"{cmp.writer.name} allows properties matching it",
			)
		elif target is not True and target is not False:
			_covered(
				cmp, w_schema, target, where, "PROPERTY_REMOVED", f"{cmp.reader.name} drops {pattern!r} and"
			)


def _dependency_lists(schema: Mapping) -> dict[str, list[str]]:
	found = dict(schema.get("dependentRequired") or {})
	found.update({k: v for k, v in (schema.get("dependencies") or {}).items() if isinstance(v, list)})
	return found


def _compare_dependencies(cmp: Comparison, w: Mapping, r: Mapping, path: str, always: set[str]) -> None:
	w_deps, r_deps = _dependency_lists(w), _dependency_lists(r)
	for key, needed in r_deps.items():
		held = w_deps.get(key)
		missing = [n for n in needed if n not in (held or ()) and n not in always]
		if missing:
			rule_name = "DEPENDENCY_ARRAY_ADDED" if held is None else "DEPENDENCY_ARRAY_EXTENDED"
			if held is not None and not set(held) <= set(needed):
				rule_name = "DEPENDENCY_ARRAY_CHANGED"
			cmp.add(
				f"{path}/{'dependencies' if key in (r.get('dependencies') or {}) else 'dependentRequired'}/{_escape(key)}",
				rule_name,
				f"{cmp.reader.name} requires {show(missing)} whenever '{key}' is present, "
				f"but {cmp.writer.name} does not",
			)
	for key, held in w_deps.items():
		if key not in r_deps:
			cmp.add(
				f"{path}/dependentRequired/{_escape(key)}", "DEPENDENCY_ARRAY_REMOVED", "dependency dropped"
			)
		elif set(r_deps[key]) < set(held):
			cmp.add(
				f"{path}/dependentRequired/{_escape(key)}", "DEPENDENCY_ARRAY_NARROWED", "fewer dependencies"
			)


def tuple_form(schema: Mapping, draft07: bool) -> tuple[list[Any], Any]:
	"""Returns an array schema as (schemas of the leading positions, schema of the other items)."""
	items = schema.get("items", True)
	if draft07:
		if isinstance(items, list):
			return items, _open(schema.get("additionalItems", True))
		return [], _open(items)
	return list(schema.get("prefixItems") or ()), _open(items)


def compare_arrays(cmp: Comparison, w: Mapping, r: Mapping, path: str) -> None:
	"""Compares tuple positions, the items after them, item counts and uniqueness."""
	w_prefix, w_rest = tuple_form(w, cmp.is_draft07(cmp.writer))
	r_draft07 = cmp.is_draft07(cmp.reader)
	r_prefix, r_rest = tuple_form(r, r_draft07)
	if not w_prefix and not r_prefix:
		cmp.compare(w_rest, r_rest, f"{path}/items")
	else:
		for index in range(max(len(w_prefix), len(r_prefix))):
			where = f"{path}/{'items' if r_draft07 else 'prefixItems'}/{index}"
			if index < len(w_prefix) and index < len(r_prefix):
				cmp.compare(w_prefix[index], r_prefix[index], where)
			elif index < len(w_prefix):
				_item_removed(cmp, w_prefix[index], r_rest, index, where)
			else:
				_item_added(cmp, w_rest, r_prefix[index], index, where)
		_compare_rest(cmp, w_rest, r_rest, f"{path}/{'additionalItems' if r_draft07 else 'items'}")
	compare_limits(cmp, w, r, path, ("minItems", "maxItems"), "ITEMS", "number of items")
	if r.get("uniqueItems") and not w.get("uniqueItems"):
		cmp.add(f"{path}/uniqueItems", "UNIQUE_ITEMS_ADDED", f"{cmp.reader.name} refuses duplicate items")
	elif w.get("uniqueItems") and not r.get("uniqueItems"):
		cmp.add(f"{path}/uniqueItems", "UNIQUE_ITEMS_REMOVED", "duplicates are allowed now")


def _item_removed(cmp: Comparison, w_item: Any, r_rest: Any, index: int, where: str) -> None:
	if r_rest is True:
		cmp.add(where, "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL", f"position {index} is not described any more")
	elif r_rest is False:
		cmp.add(
			where,
			"ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL"
			if w_item is False
			else "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL",
			f"{cmp.reader.name} drops position {index} and refuses further items, but {cmp.writer.name} sends it",
		)
	else:
		_covered(cmp, w_item, r_rest, where, "ITEM_REMOVED", f"{cmp.reader.name} drops position {index} and")


def _item_added(cmp: Comparison, w_rest: Any, r_item: Any, index: int, where: str) -> None:
	if w_rest is True:
		empty = is_empty(r_item)
		cmp.add(
			where,
			"ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL"
			if empty
			else "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
			f"{cmp.reader.name} describes position {index} as {show(r_item)}, but {cmp.writer.name} "
			"may already send any value there",
		)
	elif w_rest is False:
		cmp.add(where, "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL", f"position {index} was added")
	else:
		_covered(cmp, w_rest, r_item, where, "ITEM_ADDED", f"{cmp.reader.name} adds position {index} and")


def _compare_rest(cmp: Comparison, w_rest: Any, r_rest: Any, where: str) -> None:
	if w_rest is not False and r_rest is False:
		cmp.add(
			where,
			"ADDITIONAL_ITEMS_REMOVED",
			f"{cmp.reader.name} refuses items beyond its tuple, but {cmp.writer.name} allows them",
		)
	elif w_rest is False and r_rest is not False:
		cmp.add(where, "ADDITIONAL_ITEMS_ADDED", "further items are accepted now")
	elif w_rest is True and r_rest is not True:
		cmp.add(
			where,
			"ADDITIONAL_ITEMS_NARROWED",
			f"{cmp.reader.name} constrains further items to {show(r_rest)}, but {cmp.writer.name} allows any",
		)
	elif r_rest is True and w_rest is not True:
		cmp.add(where, "ADDITIONAL_ITEMS_EXTENDED", "further items may be anything now")
	elif w_rest is not False:
		cmp.compare(w_rest, r_rest, where)
