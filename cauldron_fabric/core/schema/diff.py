"""The comparison of a writer's schema with a reader's: can the reader read everything the writer writes?

The comparison walks both schemas together and records every difference, named by
``rules.RULES``; the incompatible ones are the reasons a change breaks readers. Objects and
arrays are compared in ``diff_containers``, strings and numbers in ``diff_scalars``. ``$ref``
within each document is followed (with a guard for recursive schemas), ``allOf`` is merged into
one schema, and ``anyOf``/``oneOf`` are matched branch by branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cauldron_fabric.core.schema import diff_containers, diff_scalars
from cauldron_fabric.core.schema.depth import MAX_WALK_DEPTH
from cauldron_fabric.core.schema.dialect import (
	DRAFT_07,
	FORMAT_CHECKER,
	dialect_of,
	resolve_ref,
	validator_class,
)
from cauldron_fabric.core.schema.identity import canonical_json, json_equal
from cauldron_fabric.core.schema.rules import rule
from cauldron_fabric.core.schema.shapes import (
	ANNOTATIONS,
	branches,
	contains,
	covers,
	enum_values,
	finite_values,
	is_empty,
	merge,
	show,
	types_of,
)

# Keywords the comparison does not reason about: a reader that adds or changes one is reported.
UNANALYSED = ("if", "then", "else", "contains", "minContains", "maxContains", "propertyNames")
UNANALYSED += ("unevaluatedItems", "dependentSchemas", "$dynamicRef")
# What is left of an ``allOf`` after merging: keywords two parts set differently (shapes.merge).
UNANALYSED += ("allOf",)


@dataclass(frozen=True, slots=True)
class Side:
	"""One schema of a comparison: the document (for ``$ref``) and how messages name it."""

	root: Any
	name: str
	who: str


@dataclass(frozen=True, slots=True)
class Difference:
	"""One difference found: where in the schema, which rule, and what it means."""

	path: str
	rule: str
	what: str
	consequence: str = ""

	@property
	def message(self) -> str:
		"""Returns what changed and, for a breaking change, whom it breaks."""
		return f"{self.what}{self.consequence}."

	@property
	def compatible(self) -> bool:
		"""Tells whether readers can still read what writers write despite this difference."""
		return rule(self.rule).compatible


class Comparison:
	"""Compares a writer's schema with a reader's and collects every difference."""

	def __init__(self, writer: Side, reader: Side):
		self.writer = writer
		self.reader = reader
		self.differences: list[Difference] = []
		self._active: set[tuple[Any, Any]] = set()
		self._depth = 0  # how many comparisons are nested in the one running
		self._draft07 = {id(writer): _is_draft07(writer.root), id(reader): _is_draft07(reader.root)}
		cls = validator_class(reader.root)
		self._reader_validator = cls(reader.root, format_checker=FORMAT_CHECKER)

	def run(self) -> list[Difference]:
		"""Compares the two documents from their roots and returns the differences found."""
		# Entering through "#" marks the root pair as active, so "$ref": "#" recursion stops at once.
		self.compare({"$ref": "#"}, {"$ref": "#"}, "#")
		return self.differences

	def add(self, path: str, rule_name: str, what: str) -> None:
		"""Records a difference; an incompatible one gets the consequence spelt out."""
		consequence = ""
		if not rule(rule_name).compatible:
			consequence = f", so events written by {self.writer.who} can be rejected by {self.reader.who}"
		self.differences.append(Difference(path, rule_name, what, consequence))

	def probe(self, writer_schema: Any, reader_schema: Any, path: str) -> list[Difference]:
		"""Compares two subschemas without recording anything; returns their differences."""
		saved, self.differences = self.differences, []
		try:
			self.compare(writer_schema, reader_schema, path)
			return self.differences
		finally:
			self.differences = saved

	def compare(self, writer_schema: Any, reader_schema: Any, path: str) -> None:
		"""Records why ``reader_schema`` may refuse values that ``writer_schema`` accepts."""
		if self._depth >= MAX_WALK_DEPTH:
			# Two recursive schemas can lead the walk ever deeper (their cycles meet in new pairs):
			# stop before Python's stack does, and say the change could not be proven safe.
			self.add(
				path,
				"NESTING_TOO_DEEP",
				f"comparing {self.writer.name} with {self.reader.name} leads more than {MAX_WALK_DEPTH} "
				"levels deep here (following $ref), deeper than the checker compares",
			)
			return
		self._depth += 1
		try:
			self._compare(writer_schema, reader_schema, path)
		finally:
			self._depth -= 1

	def _compare(self, writer_schema: Any, reader_schema: Any, path: str) -> None:
		w, w_ref = self.resolve(writer_schema, self.writer)
		r, r_ref = self.resolve(reader_schema, self.reader)
		if not (w_ref or r_ref):
			self._compare_resolved(w, r, path)
			return
		# A recursive schema meets itself again: the pair is already being compared.
		key = (w_ref or id(w), r_ref or id(r))
		if key in self._active:
			return
		self._active.add(key)
		try:
			self._compare_resolved(w, r, path)
		finally:
			self._active.discard(key)

	def is_draft07(self, side: Side) -> bool:
		"""Tells whether a side's document is draft-07 (tuples in ``items``, siblings of ``$ref`` ignored)."""
		return self._draft07[id(side)]

	def resolve(self, schema: Any, side: Side) -> tuple[Any, str | None]:
		"""Follows ``$ref`` and merges ``allOf``; returns the schema and the last reference followed."""
		token = None
		seen: set[str] = set()
		while (
			isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and schema["$ref"] not in seen
		):
			ref = schema["$ref"]
			seen.add(ref)
			token = ref
			target = resolve_ref(side.root, ref)
			siblings = {k: v for k, v in schema.items() if k != "$ref" and k not in ANNOTATIONS}
			# draft-07 ignores keywords beside $ref; 2020-12 applies both.
			schema = target if self.is_draft07(side) or not siblings else merge(target, siblings)
		if isinstance(schema, Mapping) and isinstance(schema.get("allOf"), list):
			merged: Any = {k: v for k, v in schema.items() if k != "allOf"}
			for part in schema["allOf"]:
				merged = merge(merged, self.resolve(part, side)[0])
			schema = merged
		return schema, token

	def _compare_resolved(self, w: Any, r: Any, path: str) -> None:
		if w is False or is_empty(r):
			return
		if r is False:
			self.add(path, "TYPE_NARROWED", f"{self.reader.name} accepts no value here (false)")
			return
		if w is True:
			w = {}
		self._annotations(w, r, path)
		if self._sum_types(w, r, path):
			return
		self._not(w, r, path)
		if self._enums(w, r, path):
			return
		common = self._types(w, r, path)
		if "string" in common:
			diff_scalars.compare_strings(self, w, r, path)
		if common & {"number", "integer"}:
			diff_scalars.compare_numbers(self, w, r, path, integral="number" not in common)
		if "object" in common:
			diff_containers.compare_objects(self, w, r, path)
		if "array" in common:
			diff_containers.compare_arrays(self, w, r, path)
		self._unanalysed(w, r, path)

	def _unanalysed(self, w: Mapping, r: Mapping, path: str) -> None:
		# A keyword the checker cannot reason about passes only when the reader leaves it as it was.
		for keyword in UNANALYSED:
			if keyword in r and canonical_json(r[keyword]) != canonical_json(w.get(keyword)):
				self.add(
					f"{path}/{keyword}",
					"KEYWORD_NOT_ANALYSED",
					f"{self.reader.name} sets '{keyword}' differently from {self.writer.name} and the "
					"checker cannot prove the change safe; keep the keyword unchanged",
				)
		# Lists of names are compared in diff_containers; draft-07 schema dependencies are not.
		r_schemas = {k: d for k, d in (r.get("dependencies") or {}).items() if not isinstance(d, list)}
		w_schemas = {k: d for k, d in (w.get("dependencies") or {}).items() if not isinstance(d, list)}
		if r_schemas and canonical_json(r_schemas) != canonical_json(w_schemas):
			self.add(
				f"{path}/dependencies",
				"KEYWORD_NOT_ANALYSED",
				f"{self.reader.name} changes schema dependencies",
			)

	def _annotations(self, w: Mapping, r: Mapping, path: str) -> None:
		for keyword, rule_name in (("title", "TITLE_CHANGED"), ("description", "DESCRIPTION_CHANGED")):
			if w.get(keyword) != r.get(keyword):
				self.add(f"{path}/{keyword}", rule_name, f"the {keyword} changed")
		if "default" in w or "default" in r:
			if not json_equal(w.get("default"), r.get("default")):
				self.add(f"{path}/default", "DEFAULT_CHANGED", "the default changed")

	def _sum_types(self, w: Mapping, r: Mapping, path: str) -> bool:
		w_kind, w_branches = branches(w)
		r_kind, r_branches = branches(r)
		if w_kind is None and r_kind is None:
			return False
		if w_kind is None and len(types_of(w)) > 1 and "type" in w:
			# {"type": ["string", "null"]} is the union of one alternative per type.
			w_branches = [{**w, "type": t} for t in sorted(types_of(w))]
		if w_kind == "anyOf" and r_kind == "oneOf" and len(r_branches) > 1 and len(w_branches) > 1:
			self.add(
				f"{path}/oneOf",
				"COMBINED_TYPE_CHANGED",
				f"{self.reader.name} requires exactly one alternative to match (oneOf) where "
				f"{self.writer.name} allows several (anyOf)",
			)
		elif w_kind == "oneOf" and r_kind == "anyOf":
			self.add(f"{path}/anyOf", "COMBINED_TYPE_EXTENDED", "oneOf relaxed to anyOf")
		for index, w_branch in enumerate(w_branches):
			branch_path = f"{path}/{w_kind}/{index}" if w_kind else path
			trials = [self.probe(w_branch, r_branch, branch_path) for r_branch in r_branches]
			fits = [t for t in trials if all(d.compatible for d in t)]
			if fits and r_kind == "oneOf":
				overlapping = [
					i
					for i, (trial, r_branch) in enumerate(zip(trials, r_branches, strict=True))
					if all(d.compatible for d in trial) or _may_overlap(w_branch, r_branch)
				]
				if len(overlapping) > 1:
					self.add(
						branch_path,
						"SUM_TYPE_NARROWED",
						f"values of this alternative of {self.writer.name} match several alternatives "
						f"({', '.join(f'#{i}' for i in overlapping)}) of {self.reader.name}, whose oneOf "
						"refuses a value matching more than one",
					)
					continue
			if fits:
				self.differences.extend(fits[0])
				continue
			if len(w_branches) == 1 and len(r_branches) == 1:
				self.differences.extend(trials[0])
				continue
			closest = min(trials, key=lambda t: sum(not d.compatible for d in t))
			detail = next(d.what for d in closest if not d.compatible)
			self.add(
				branch_path,
				"SUM_TYPE_NARROWED",
				f"this alternative of {self.writer.name} matches no alternative of {self.reader.name} "
				f"(nearest: {detail})",
			)
		if len(r_branches) > len(w_branches) and r_kind:
			self.add(f"{path}/{r_kind}", "SUM_TYPE_EXTENDED", f"{self.reader.name} accepts more alternatives")
		return True

	def _not(self, w: Mapping, r: Mapping, path: str) -> None:
		if "not" in r and canonical_json(r["not"]) != canonical_json(w.get("not")):
			self.add(
				f"{path}/not",
				"NOT_TYPE_EXTENDED",
				f"{self.reader.name} excludes {show(r['not'])} (not), which {self.writer.name} does not exclude",
			)
		elif "not" in w and "not" not in r:
			self.add(f"{path}/not", "NOT_TYPE_NARROWED", f"{self.reader.name} no longer excludes anything")

	def _enums(self, w: Mapping, r: Mapping, path: str) -> bool:
		w_values, r_values = finite_values(w), enum_values(r)
		if r_values is None and enum_values(w) is None:
			# Booleans and null are compared by type unless an enum is involved.
			w_values = None
		if w_values is None:
			if r_values is None:
				return False
			self.add(
				f"{path}/enum",
				"ENUM_ARRAY_NARROWED",
				f"{self.reader.name} accepts only {show(r_values)} where {self.writer.name} allows any "
				f"{'/'.join(sorted(types_of(w))) if 'type' in w else 'value'}",
			)
			return True
		validator = self._reader_validator.evolve(schema=r)
		rejected = [v for v in w_values if not validator.is_valid(v)]
		if not rejected:
			if r_values is not None and len(r_values) > len(w_values):
				self.add(f"{path}/enum", "ENUM_ARRAY_EXTENDED", f"{self.reader.name} accepts more values")
			return True
		if r_values is not None and any(not contains(r_values, v) for v in rejected):
			missing = [v for v in rejected if not contains(r_values, v)]
			narrowed = all(contains(w_values, v) for v in r_values)
			self.add(
				f"{path}/enum",
				"ENUM_ARRAY_NARROWED" if narrowed else "ENUM_ARRAY_CHANGED",
				f"{self.reader.name} no longer accepts {show(missing)}, which {self.writer.name} allows",
			)
		else:
			self.add(
				path,
				"ENUM_VALUE_REJECTED",
				f"{show(rejected)}, allowed by {self.writer.name}, fails another rule of {self.reader.name}",
			)
		return True

	def _types(self, w: Mapping, r: Mapping, path: str) -> frozenset[str]:
		w_types, r_types = types_of(w), types_of(r)
		common = {t for t in w_types if covers(r_types, t)}
		lost = set(w_types) - common
		if "number" in lost and "integer" in r_types:
			# Whole numbers still fit; fractions such as 1.5 no longer do.
			lost.discard("number")
			common.add("integer")
			self.add(
				f"{path}/type",
				"TYPE_NARROWED",
				f"{self.reader.name} accepts only integers, but {self.writer.name} allows fractions such as 1.5",
			)
		if lost and not common:
			self.add(
				f"{path}/type",
				"TYPE_CHANGED",
				f"the type changed from {show(sorted(w_types))} ({self.writer.name}) to "
				f"{show(sorted(r_types))} ({self.reader.name})",
			)
			return frozenset()
		if lost:
			self.add(
				f"{path}/type",
				"TYPE_NARROWED",
				f"{self.reader.name} no longer accepts {show(sorted(lost))}, which {self.writer.name} allows",
			)
		if "type" in w and any(not covers(w_types, t) for t in r_types):
			self.add(f"{path}/type", "TYPE_EXTENDED", f"{self.reader.name} accepts more types")
		return frozenset(common)


def _may_overlap(w: Any, r: Any) -> bool:
	"""Tells whether a reader alternative that is a bare type may accept values of the writer's.

	Only bare types are looked at (``{"type": "number"}``); alternatives told apart by other
	keywords (a ``const`` discriminator, required properties) are taken as disjoint.
	"""
	if not isinstance(r, Mapping) or not isinstance(w, Mapping) or "type" not in r:
		return False
	if any(k not in ANNOTATIONS and k != "type" and not k.startswith("x-") for k in r):
		return False
	w_types, r_types = types_of(w), types_of(r)
	return any(covers(r_types, t) for t in w_types) or any(covers(w_types, t) for t in r_types)


def _is_draft07(root: Any) -> bool:
	return isinstance(root, Mapping) and dialect_of(root) == DRAFT_07
