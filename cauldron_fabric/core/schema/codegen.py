"""Typed client code from event schemas: Python ``TypedDict``s and TypeScript interfaces.

Both generators take ``{event type: payload schema}`` (for the catalog:
``{e.type: e.schema for e in load_catalog()}``) and return source text; ``write_sources``
writes both files, for ``bench fabric codegen``. Every object with properties becomes a named
type (``AgentApprovalRequestedPayload``, ``AgentApprovalRequestedPayloadApprovers``...);
string enums become literal unions; optional properties are ``NotRequired``-style (a
``total=False`` subclass in Python, ``?`` in TypeScript); nullable ones add ``None``/``null``.
A recursive ``$ref`` (a tree of org units) makes the object it leads to a type that names
itself; one that leads to no object (an array of arrays of itself) is spelt as unknown.
"""

from __future__ import annotations

import contextlib
import json
import keyword
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cauldron_fabric.core.schema.dialect import RECURSION_MARK, RECURSION_TARGET, inline_refs
from cauldron_fabric.core.schema.shapes import is_empty, merge

PYTHON_FILE = "cauldron_events.py"
TYPESCRIPT_FILE = "cauldron_events.ts"
_WORD = re.compile(r"[A-Za-z0-9]+")
# "\Z", not "$": a property named "qty\n" is no identifier, though "$" matches before the newline.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
_HEADER = (
	"Typed payloads of Cauldron events, generated from the schema registry by cauldron_fabric; do not edit."
)


def type_name(text: str, suffix: str = "") -> str:
	"""Returns a PascalCase type name: ``agent.approval.requested`` becomes ``AgentApprovalRequested``."""
	name = "".join(word[:1].upper() + word[1:] for word in _WORD.findall(text)) or "Value"
	return ("T" + name if name[0].isdigit() else name) + suffix


class _Generator:
	"""Walks schemas and collects named types; subclasses say how each construct is spelt."""

	null = "None"
	unknown = "Any"
	scalars: Mapping[str, str] = {}

	def __init__(self):
		self.used: set[str] = set()
		self.blocks: list[str] = []
		# A recursive $ref to the name of the object type it leads to, while that type is spelt.
		self.named: dict[str, str] = {}

	def unique(self, name: str) -> str:
		candidate, number = name, 2
		while candidate in self.used:
			candidate, number = f"{name}{number}", number + 1
		self.used.add(candidate)
		return candidate

	def spell(self, schema: Any, hint: str) -> str:
		"""Returns the type expression of ``schema``, defining named types for its objects."""
		if isinstance(schema, Mapping) and RECURSION_MARK in schema:
			return self.named.get(schema[RECURSION_MARK], self.unknown)
		if not isinstance(schema, Mapping) or is_empty(schema):
			return self.unknown
		if isinstance(schema.get("allOf"), list):
			merged: Any = {k: v for k, v in schema.items() if k != "allOf"}
			for part in schema["allOf"]:
				merged = merge(merged, part)
			return self.spell(merged, hint)
		for kind in ("anyOf", "oneOf"):
			if isinstance(schema.get(kind), list):
				# Each branch is a type of its own, none of them the one a recursive $ref names.
				base = {k: v for k, v in schema.items() if k not in (kind, RECURSION_TARGET)}
				return self.union(
					[
						self.spell(merge(base, branch), f"{hint}{i + 1}")
						for i, branch in enumerate(schema[kind])
					]
				)
		if "const" in schema or "enum" in schema:
			values = [schema["const"]] if "const" in schema else list(schema["enum"])
			spelt = [self.literal(v) for v in values if v is not None]
			return self.union(spelt + ([self.null] if None in values else []))
		declared = schema.get("type")
		if declared is None:
			declared = "object" if "properties" in schema else "array" if "items" in schema else None
		if declared is None:
			return self.unknown
		types = [declared] if isinstance(declared, str) else list(declared)
		return self.union([self.spell_type(t, schema, hint) for t in types])

	def spell_type(self, json_type: str, schema: Mapping, hint: str) -> str:
		if json_type == "null":
			return self.null
		if json_type == "array":
			items = schema.get("items", True)
			return self.array(self.spell(items if isinstance(items, Mapping) else True, f"{hint}Item"))
		if json_type == "object":
			if schema.get("properties"):
				return self.define(schema, hint)
			extra = schema.get("additionalProperties", True)
			return self.mapping(
				self.spell(extra, f"{hint}Value") if isinstance(extra, Mapping) else self.unknown
			)
		return self.scalars[json_type]

	def union(self, parts: list[str]) -> str:
		unique = list(dict.fromkeys(parts))
		if self.unknown in unique:
			return self.unknown
		return " | ".join(unique) if unique else self.unknown

	def define(self, schema: Mapping, hint: str) -> str:
		name = self.unique(hint)
		target = schema.get(RECURSION_TARGET)
		outer = self.named.get(target) if isinstance(target, str) else None
		if isinstance(target, str):
			self.named[target] = name
		required = set(schema.get("required") or ())
		fields = [
			(key, self.spell(sub, name + type_name(key)), key in required, _description(sub))
			for key, sub in schema["properties"].items()
		]
		if isinstance(target, str):
			if outer is None:
				del self.named[target]
			else:
				self.named[target] = outer
		open_model = schema.get("additionalProperties", True) is not False
		self.blocks.append(self.block(name, fields, open_model, _description(schema)))
		return name

	def literal(self, value: Any) -> str:
		raise NotImplementedError

	def array(self, item: str) -> str:
		raise NotImplementedError

	def mapping(self, value: str) -> str:
		raise NotImplementedError

	def block(self, name: str, fields: list[tuple[str, str, bool, str]], open_model: bool, doc: str) -> str:
		raise NotImplementedError


def _description(schema: Any) -> str:
	if not isinstance(schema, Mapping):
		return ""
	return str(schema.get("description") or schema.get("title") or "").strip()


class _Python(_Generator):
	null = "None"
	unknown = "Any"
	scalars = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}

	def literal(self, value: Any) -> str:
		return f"Literal[{value!r}]"

	def union(self, parts: list[str]) -> str:
		literals = [p[len("Literal[") : -1] for p in parts if p.startswith("Literal[")]
		others = [p for p in parts if not p.startswith("Literal[")]
		merged = ([f"Literal[{', '.join(dict.fromkeys(literals))}]"] if literals else []) + others
		return super().union(merged)

	def array(self, item: str) -> str:
		return f"list[{item}]"

	def mapping(self, value: str) -> str:
		return f"dict[str, {value}]"

	def block(self, name: str, fields: list[tuple[str, str, bool, str]], open_model: bool, doc: str) -> str:
		required = [(k, t) for k, t, req, _ in fields if req]
		optional = [(k, t) for k, t, req, _ in fields if not req]
		if not all(_IDENTIFIER.match(k) and not keyword.iskeyword(k) for k, *_ in fields):
			return _functional(name, required, optional)
		summary = (doc or f"The {name} object.").splitlines()[0].replace("\\", "\\\\").replace('"', "'")
		if required and optional:
			base = self.unique(f"_{name}Required")
			return (
				_class(base, "TypedDict", required, None)
				+ "\n\n\n"
				+ _class(name, f"{base}, total=False", optional, summary)
			)
		if required:
			return _class(name, "TypedDict", required, summary)
		return _class(name, "TypedDict, total=False", optional, summary)


def _class(name: str, bases: str, fields: list[tuple[str, str]], doc: str | None) -> str:
	lines = [f"class {name}({bases}):"]
	if doc:
		lines.append(f'\t"""{doc}"""')
		if fields:
			lines.append("")
	lines += [f"\t{key}: {spelt}" for key, spelt in fields] or ([] if doc else ["\tpass"])
	return "\n".join(lines)


def _functional(name: str, required: list[tuple[str, str]], optional: list[tuple[str, str]]) -> str:
	# Keys that are not identifiers need TypedDict's call syntax; the class joins both halves.
	# The call's types are quoted: unlike a class body's, they are read when the module runs,
	# before a type that refers to itself (or to this one) is defined.
	def spelt(fields: list[tuple[str, str]]) -> str:
		return "{" + ", ".join(f"{k!r}: {t!r}" for k, t in fields) + "}"

	return (
		f"_{name}Required = TypedDict({'_' + name + 'Required'!r}, {spelt(required)})\n"
		f"_{name}Optional = TypedDict({'_' + name + 'Optional'!r}, {spelt(optional)}, total=False)\n\n\n"
		f"class {name}(_{name}Required, _{name}Optional):\n\tpass"
	)


class _TypeScript(_Generator):
	null = "null"
	unknown = "unknown"
	scalars = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean"}

	def literal(self, value: Any) -> str:
		return json.dumps(value) if isinstance(value, str | int | float | bool) else "unknown"

	def array(self, item: str) -> str:
		return f"({item})[]" if " | " in item else f"{item}[]"

	def mapping(self, value: str) -> str:
		return f"Record<string, {value}>"

	def block(self, name: str, fields: list[tuple[str, str, bool, str]], open_model: bool, doc: str) -> str:
		lines = [f"/** {_ts_comment(doc)} */"] if doc else []
		lines.append(f"export interface {name} {{")
		for key, spelt, required, description in fields:
			if description:
				lines.append(f"\t/** {_ts_comment(description)} */")
			spelt_key = key if _IDENTIFIER.match(key) else json.dumps(key)
			lines.append(f"\t{spelt_key}{'' if required else '?'}: {spelt};")
		if open_model:
			lines.append("\t[key: string]: unknown;")
		lines.append("}")
		return "\n".join(lines)


def _ts_comment(text: str) -> str:
	return " ".join(text.split()).replace("*/", "* /")


def _generate(generator: _Generator, schemas: Mapping[str, Any]) -> dict[str, str]:
	roots = {}
	for event_type, schema in sorted(schemas.items()):
		inlined = inline_refs(schema, mark_recursion=True)
		roots[event_type] = generator.spell(inlined, type_name(event_type, "Payload"))
	return roots


def python_source(schemas: Mapping[str, Any]) -> str:
	"""Returns a Python module of TypedDicts, ``EVENT_PAYLOADS`` (type to class) and ``EventType``."""
	generator = _Python()
	roots = _generate(generator, schemas)
	table = "\n".join(f"\t{t!r}: {name}," for t, name in roots.items())
	literal = ", ".join(repr(t) for t in roots)
	return (
		f'"""{_HEADER}"""\n\nfrom __future__ import annotations\n\n'
		"from typing import Any, Literal, TypedDict\n\n"
		+ "\n\n\n".join(generator.blocks)
		+ f"\n\n\nEventType = Literal[{literal}]\n\nEVENT_PAYLOADS: dict[str, Any] = {{\n{table}\n}}\n"
	)


def typescript_source(schemas: Mapping[str, Any]) -> str:
	"""Returns TypeScript interfaces, ``EventType``, ``EventPayloads`` and a typed ``Envelope``."""
	generator = _TypeScript()
	roots = _generate(generator, schemas)
	event_type = " | ".join(json.dumps(t) for t in roots) or "never"
	table = "\n".join(f"\t{json.dumps(t)}: {name};" for t, name in roots.items())
	envelope = (
		"/** The envelope of section 3.2 around a payload of event type T. */\n"
		"export interface Envelope<T extends EventType = EventType> {\n"
		"\tid: string;\n\ttype: T;\n\tsource: string;\n\ttime: string;\n\tdataContentType: string;\n"
		'\tspecVersion: "1.0";\n\tdataSchema?: string;\n'
		"\tdata: { entity: string; entityId: string; action: string; payload: EventPayloads[T] };\n"
		"\tmetadata: { correlationId: string | null; causationId: string | null; "
		"userId: string | null; tenantId: string | null };\n}\n"
	)
	return (
		f"// {_HEADER}\n\n"
		+ "\n\n".join(generator.blocks)
		+ f"\n\nexport type EventType = {event_type};\n\nexport interface EventPayloads {{\n{table}\n}}\n\n"
		+ envelope
	)


def write_sources(schemas: Mapping[str, Any], directory: str | Path) -> list[Path]:
	"""Writes ``cauldron_events.py`` and ``cauldron_events.ts`` into ``directory``; returns their paths."""
	folder = Path(directory)
	folder.mkdir(parents=True, exist_ok=True)
	written = []
	render: tuple[tuple[str, Callable[[Mapping[str, Any]], str]], ...] = (
		(PYTHON_FILE, python_source),
		(TYPESCRIPT_FILE, typescript_source),
	)
	# Both are written aside first, then moved into place: a write failing halfway (a full disk)
	# leaves the last pair as it was, not a new Python file beside an old TypeScript one.
	staged = []
	try:
		for filename, make in render:
			aside = folder / f".{filename}.tmp"
			staged.append(aside)
			aside.write_text(make(schemas), encoding="utf-8")
		for aside, (filename, _) in zip(staged, render, strict=True):
			os.replace(aside, folder / filename)
			written.append(folder / filename)
	finally:
		for aside in staged:
			with contextlib.suppress(OSError):
				aside.unlink(missing_ok=True)
	return written
