"""How deep a schema may nest, measured without recursion before anything walks it recursively.

Every use of a schema walks it recursively: jsonschema's meta-schema check takes about eight
Python frames a level, the compatibility comparison, the compiled validators and the AsyncAPI
and code generators several more, and Python gives out at 1000 frames, part of them already
used by the web request. A schema nested a hundred levels failed with RecursionError; a few
hundred levels also broke the error logging of the request. So a schema is measured first, by a
loop, and refused beyond ``MAX_SCHEMA_DEPTH``; the walks that follow ``$ref`` (which can lead
deeper than the document itself) also stop at ``MAX_WALK_DEPTH``.

Depth counts objects and arrays nested in each other, the schema itself being level 1, and a
``$ref`` counts as its target nested in its place (a reference back into the chain that leads
to it counts as nothing: the walks stop there). The catalog's schemas nest at most nine levels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from cauldron_fabric.core.envelope import MAX_PAYLOAD_DEPTH
from cauldron_fabric.core.schema.errors import InvalidSchema

# As deep as an event payload may nest: deeper, and the checks of a schema would need more of
# Python's stack than a request has left.
MAX_SCHEMA_DEPTH = MAX_PAYLOAD_DEPTH
# How deep a walk following $ref may go. A schema within MAX_SCHEMA_DEPTH never reaches it;
# two recursive schemas compared with each other can (their cycles meet in ever new pairs).
MAX_WALK_DEPTH = 2 * MAX_SCHEMA_DEPTH
# An array index in a JSON pointer: ASCII digits only. str.isdigit also takes superscripts such
# as "\u00b2", which int() then refuses (a ValueError where "points to nothing" is meant).
POINTER_INDEX = re.compile("[0-9]+")
# What pointed_at returns for a pointer that names nothing (None is a node: JSON's null).
NOWHERE = object()
_SCALARS = (str, int, float, type(None))
# JSON strings (brackets inside them are text) and the brackets outside them.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def schema_depth(schema: Any) -> int:
	"""Returns how deep a schema nests, a ``$ref`` counting as its target nested in its place.

	A loop with its own stack, never recursion: it must work on the schemas that recursion
	cannot walk. Each object and array is measured once, so a schema whose references fan out
	(each definition naming the next twice) costs no more than its size.
	"""
	if not isinstance(schema, Mapping | list):
		return 0
	targets = _Targets(schema)
	heights: dict[int, int] = {}
	on_path: set[int] = set()
	# Each entry: a node, what is inside it, and how many of those have been entered.
	stack: list[list[Any]] = [[schema, targets.children(schema), 0]]
	on_path.add(id(schema))
	while stack:
		entry = stack[-1]
		node, children, index = entry
		if index < len(children):
			entry[2] += 1
			child = children[index]
			if id(child) not in heights and id(child) not in on_path:
				on_path.add(id(child))
				stack.append([child, targets.children(child), 0])
			continue
		stack.pop()
		on_path.discard(id(node))
		# A child still on the path is a reference back into it: the walks stop there.
		heights[id(node)] = 1 + max((heights.get(id(c), 0) for c in children), default=0)
	return heights[id(schema)]


class _Targets:
	"""Finds what a local ``$ref`` points to, without recursion (dialect.resolve_ref may recurse)."""

	def __init__(self, root: Any):
		self.root = root
		self._anchors: dict[str, Any] | None = None

	def children(self, node: Any) -> list[Any]:
		"""Returns the objects and arrays directly inside ``node``, and the target of its ``$ref``."""
		values = node.values() if isinstance(node, Mapping) else node
		children = [value for value in values if _is_container(value)]
		ref = node.get("$ref") if isinstance(node, Mapping) else None
		target = self.target(ref) if isinstance(ref, str) else None
		if isinstance(target, Mapping | list):
			children.append(target)
		return children

	def target(self, ref: str) -> Any:
		"""Returns the node ``ref`` points to, or None when it points nowhere in the document."""
		if not ref.startswith("#"):
			return None
		fragment = unquote(ref[1:])
		if fragment and not fragment.startswith("/"):
			return self.anchors().get(fragment)
		node = pointed_at(self.root, fragment)
		return None if node is NOWHERE else node

	def anchors(self) -> dict[str, Any]:
		"""Returns every ``$anchor`` of the document and the object carrying it."""
		if self._anchors is None:
			self._anchors = {}
			pending = [self.root]
			while pending:
				node = pending.pop()
				values = node.values() if isinstance(node, Mapping) else node
				pending.extend(value for value in values if _is_container(value))
				if isinstance(node, Mapping) and isinstance(node.get("$anchor"), str):
					self._anchors.setdefault(node["$anchor"], node)
		return self._anchors


def pointed_at(root: Any, pointer: str) -> Any:
	"""Returns the node a JSON pointer (``/$defs/a/0``) names in ``root``, or ``NOWHERE``."""
	node = root
	for raw in pointer.split("/")[1:]:
		part = raw.replace("~1", "/").replace("~0", "~")
		if isinstance(node, Mapping) and part in node:
			node = node[part]
		elif isinstance(node, list) and POINTER_INDEX.fullmatch(part) and int(part) < len(node):
			node = node[int(part)]
		else:
			return NOWHERE
	return node


def _is_container(value: Any) -> bool:
	# Scalars first: the Mapping check is an ABC lookup, slow for the many strings of a large schema.
	return not isinstance(value, _SCALARS) and isinstance(value, Mapping | list)


def json_text_depth(text: str) -> int:
	"""Returns how deep objects and arrays nest in JSON text, read as text (the decoder recurses)."""
	depth = deepest = 0
	for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
		depth += 1 if bracket in "[{" else -1
		deepest = max(deepest, depth)
	return deepest


def check_depth(schema: Any) -> None:
	"""Raises InvalidSchema when a schema nests deeper than MAX_SCHEMA_DEPTH, saying how deep it goes."""
	depth = schema_depth(schema)
	if depth > MAX_SCHEMA_DEPTH:
		raise InvalidSchema([too_deep(depth, "The schema", "counting a $ref as its target")])


def too_deep(depth: int | None, what: str, counting: str = "") -> str:
	"""Returns the problem of a value nested too deeply: how deep (when known), the limit, what to do."""
	how_deep = f"{depth} levels deep" if depth is not None else f"more than {MAX_WALK_DEPTH} levels deep"
	if counting:
		how_deep += f" ({counting})"
	return (
		f"{what} nests objects and arrays {how_deep}, but at most {MAX_SCHEMA_DEPTH} levels are "
		"accepted; flatten it"
	)
