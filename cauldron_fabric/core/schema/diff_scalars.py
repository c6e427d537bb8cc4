"""Strings and numbers in the compatibility comparison: lengths, patterns, formats, bounds, steps."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import TYPE_CHECKING

from cauldron_fabric.core.schema.diff_containers import compare_limits
from cauldron_fabric.core.schema.shapes import show, writer_bound

if TYPE_CHECKING:
	from cauldron_fabric.core.schema.diff import Comparison


def compare_strings(cmp: Comparison, w: Mapping, r: Mapping, path: str) -> None:
	"""Compares string lengths, patterns and formats."""
	compare_limits(cmp, w, r, path, ("minLength", "maxLength"), "LENGTH", "string length")
	for keyword, upper in (("pattern", "PATTERN"), ("format", "FORMAT")):
		if keyword in r and w.get(keyword) != r[keyword]:
			cmp.add(
				f"{path}/{keyword}",
				f"{upper}_ADDED" if keyword not in w else f"{upper}_CHANGED",
				f"{cmp.reader.name} requires the {keyword} {show(r[keyword])}, which "
				f"{cmp.writer.name} does not ({show(w.get(keyword))})",
			)
		elif keyword in w and keyword not in r:
			cmp.add(f"{path}/{keyword}", f"{upper}_REMOVED", f"the {keyword} was dropped")


def compare_numbers(cmp: Comparison, w: Mapping, r: Mapping, path: str, integral: bool) -> None:
	"""Compares number bounds and steps; ``integral`` when only integers are compared."""
	for keyword in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
		_bound(cmp, w, r, path, keyword, "lower" if "inimum" in keyword else "upper")
	w_step = w.get("multipleOf", 1 if integral else None)
	r_step = r.get("multipleOf")
	if (
		r_step is not None
		and w_step is not None
		and (Fraction(str(w_step)) / Fraction(str(r_step))).denominator == 1
	):
		if w_step != r_step and "multipleOf" in w:
			cmp.add(f"{path}/multipleOf", "MULTIPLE_OF_REDUCED", f"multipleOf {w_step} became {r_step}")
	elif r_step is not None:
		coarser = w_step is not None and (Fraction(str(r_step)) / Fraction(str(w_step))).denominator == 1
		cmp.add(
			f"{path}/multipleOf",
			"MULTIPLE_OF_ADDED"
			if w_step is None
			else ("MULTIPLE_OF_EXPANDED" if coarser else "MULTIPLE_OF_CHANGED"),
			f"{cmp.reader.name} requires multiples of {r_step}, but {cmp.writer.name} allows "
			f"{'any number' if w_step is None else f'any multiple of {w_step}'}",
		)
	elif "multipleOf" in w:
		cmp.add(f"{path}/multipleOf", "MULTIPLE_OF_REMOVED", "multipleOf was dropped")


def _bound(cmp: Comparison, w: Mapping, r: Mapping, path: str, keyword: str, bound: str) -> None:
	"""Compares one bound (``keyword``), the writer's ``lower`` or ``upper`` limit against the reader's."""
	name = {"minimum": "MINIMUM", "exclusiveMinimum": "EXCLUSIVE_MINIMUM"}.get(keyword)
	name = name or {"maximum": "MAXIMUM", "exclusiveMaximum": "EXCLUSIVE_MAXIMUM"}[keyword]
	tighter, looser = ("INCREASED", "DECREASED") if bound == "lower" else ("DECREASED", "INCREASED")
	if keyword not in r:
		if keyword in w:
			cmp.add(f"{path}/{keyword}", f"{name}_REMOVED", f"{keyword} was dropped")
		return
	limit = r[keyword]
	held = writer_bound(w, bound)
	exclusive = keyword.startswith("exclusive")
	if held is None:
		ok = False
	elif bound == "lower":
		ok = held[0] > limit or (held[0] == limit and (held[1] or not exclusive))
	else:
		ok = held[0] < limit or (held[0] == limit and (held[1] or not exclusive))
	if not ok:
		operator = (
			(">" if held and held[1] else ">=") if bound == "lower" else ("<" if held and held[1] else "<=")
		)
		cmp.add(
			f"{path}/{keyword}",
			f"{name}_ADDED" if held is None else f"{name}_{tighter}",
			f"{cmp.reader.name} requires {keyword} {limit}, but {cmp.writer.name} allows "
			+ ("any number" if held is None else f"numbers {operator} {held[0]}"),
		)
	elif keyword in w and w[keyword] != limit:
		cmp.add(f"{path}/{keyword}", f"{name}_{looser}", f"{keyword} {w[keyword]} became {limit}")
