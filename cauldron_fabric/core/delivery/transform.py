"""Payload forms: what a subscription sends for an event.

=========================  =====================================================================
form                       body (content type); CloudEvents attributes as protocol headers
=========================  =====================================================================
``envelope``               the seed envelope (``application/json``); attributes, so the message
                           is also a binary-mode CloudEvent whose data is the envelope
``cloudevents-structured`` one ``application/cloudevents+json`` document; no attribute headers
``cloudevents-binary``     the envelope's ``data`` object; attributes as headers
``template``               a Jinja template rendered in a sandbox (content type configurable)
``fields``                 an object made of selected dotted paths (``application/json``); a
                           path through a list index keeps a list, as jq's ``setpath`` does
=========================  =====================================================================

Templates and field lists are checked when the subscription is saved (``compile_transform``),
so a typo shows up in Desk, not as dead letters later. A template sees the event's JSON form
(``id``, ``type``, ``data``, ``metadata``, ...), ``payload`` (``data.payload``) and ``event``
(the whole document); the ``json`` filter writes any value as JSON.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment

from cauldron_fabric.core import cloudevents as ce
from cauldron_fabric.core.delivery.paths import parse_path, resolve
from cauldron_fabric.core.envelope import JSON_CONTENT_TYPE, Envelope, dumps
from cauldron_fabric.core.errors import ConfigurationError, PermanentError

ENVELOPE, STRUCTURED, BINARY, TEMPLATE, FIELDS = (
	"envelope",
	"cloudevents-structured",
	"cloudevents-binary",
	"template",
	"fields",
)
FORMS = (ENVELOPE, STRUCTURED, BINARY, TEMPLATE, FIELDS)
REQUIRED_ATTRIBUTES = frozenset({"specversion", "id", "source", "type"})
MAX_OUTPUT = 1_000_000
MAX_REPEAT = 100_000
MAX_STEPS = 1_000_000  # loop items and calls in one render; a receipt's few hundred lines use thousands
MAX_PLACED_INDEX = 100_000  # a list index kept in place pads the list with this many nulls at most


class TransformError(ConfigurationError):
	"""A payload form that cannot work as configured (found when the subscription is saved)."""


class RenderError(PermanentError):
	"""A template or selection that failed for one event; retrying the same event cannot help."""


@dataclass(frozen=True, slots=True)
class RenderedPayload:
	"""A body ready to send, its content type, and the event's CloudEvents attributes.

	``attributes_in_body`` tells that the body (the seed envelope) already carries every
	attribute, so a protocol may send only the four required ones as headers.
	"""

	body: bytes
	content_type: str
	attributes: tuple[tuple[str, str], ...] = ()
	attributes_in_body: bool = False

	def headers(self, prefix: str, compact: bool = False) -> tuple[tuple[str, str], ...]:
		"""Returns the attributes as headers of one binding (``ce-`` HTTP, ``ce_`` Kafka) plus content type.

		Values are as the binding carries them: percent-encoded in HTTP headers.

		``compact`` keeps only ``specversion``, ``id``, ``source`` and ``type`` when the body
		carries the rest: still a valid binary CloudEvent, with five fewer headers per request.
		"""
		attributes = self.attributes
		if compact and self.attributes_in_body:
			attributes = tuple(a for a in attributes if a[0] in REQUIRED_ATTRIBUTES)
		return (
			*((prefix + name, ce.binding_value(prefix, value)) for name, value in attributes),
			("content-type", self.content_type),
		)


# The steps the render under way may still take (see _Sandbox.counted); one per render.
_STEPS_LEFT: ContextVar[Iterator[int]] = ContextVar("template_steps_left")


class _Sandbox(SandboxedEnvironment):
	"""The Jinja sandbox, also refusing to build huge strings or lists with ``*`` and ``**``.

	It also stops a render past MAX_STEPS loop items and calls: loops that write nothing never
	reach the output limit, and nested ones could hold a delivery worker for hours.
	"""

	intercepted_binops = frozenset({"*", "**"})

	def call(__self, __context, __obj, *args, **kwargs) -> Any:  # a template may pass self= as a keyword
		_take_step()
		if isinstance(__obj, LoopContext) and args:  # loop(children) in a recursive for
			args = (__self.counted(args[0]), *args[1:])
		return super().call(__context, __obj, *args, **kwargs)

	def counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
		"""Yields a for loop's items, each one step (every loop's iterable passes here, see _budgeted)."""
		for item in iterable:
			_take_step()
			yield item

	def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
		sizes = [len(v) for v in (left, right) if isinstance(v, str | list | tuple)]
		counts = [v for v in (left, right) if isinstance(v, int) and not isinstance(v, bool)]
		if operator == "*" and sizes and counts and sizes[0] * max(counts) > MAX_REPEAT:
			raise jinja2.exceptions.SecurityError("the template repeats a string or list too often")
		if operator == "**" and isinstance(right, int | float) and abs(right) > 64:
			raise jinja2.exceptions.SecurityError("the template raises to too high a power")
		return super().call_binop(context, operator, left, right)


def _environment() -> SandboxedEnvironment:
	env = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
	env.filters["json"] = dumps
	return env


ENVIRONMENT = _environment()


def _take_step() -> None:
	if next(_STEPS_LEFT.get(), None) is None:
		raise RenderError(
			f"The payload template took more than {MAX_STEPS} steps (loop items and calls) and was stopped.",
			hint="Loop over fewer items or nest fewer loops, then retry the dead letter.",
		)


@dataclass(frozen=True, slots=True)
class Transform:
	"""A compiled payload form; ``render`` turns one event into a RenderedPayload."""

	form: str = ENVELOPE
	content_type: str = JSON_CONTENT_TYPE
	template_source: str = ""
	fields: tuple[tuple[str, tuple[str | int, ...]], ...] = ()
	template: Any = field(default=None, compare=False, hash=False, repr=False)

	def render(self, envelope: Envelope) -> RenderedPayload:
		"""Returns the payload for ``envelope``; raises RenderError when a template fails on it."""
		return RENDERERS[self.form](self, envelope)


def compile_transform(
	form: str = ENVELOPE,
	*,
	template: str = "",
	fields: Sequence[str] = (),
	content_type: str | None = None,
) -> Transform:
	"""Validates a payload form and compiles its template or field list; raises TransformError."""
	if form not in FORMS:
		raise TransformError(f"Unknown payload form {form!r}.", hint=f"Use one of {', '.join(FORMS)}.")
	if form == TEMPLATE:
		return Transform(
			form, content_type or JSON_CONTENT_TYPE, template, template=_compile_template(template)
		)
	if form == FIELDS:
		return Transform(form, JSON_CONTENT_TYPE, fields=_compile_fields(fields))
	return Transform(form)


def _compile_template(source: str) -> Any:
	if not source or not source.strip():
		raise TransformError(
			"The payload template is empty.", hint="Write a Jinja template, e.g. {{ payload | json }}."
		)
	try:
		return ENVIRONMENT.from_string(_budgeted(ENVIRONMENT.parse(source)))
	except jinja2.TemplateSyntaxError as exc:
		raise TransformError(
			f"The payload template has a syntax error on line {exc.lineno}: {exc.message}.",
			hint="Fix the template; see the Jinja documentation for the syntax.",
		) from exc
	except (RecursionError, SyntaxError) as exc:
		# Jinja's parser recurses once per nesting level, and Python refuses the code it generates
		# for over 100 nested blocks; either would otherwise reach Desk as a server error.
		raise TransformError(
			"The payload template nests too deeply to compile.",
			hint="Nest fewer brackets, parentheses or blocks; use {% set %} for intermediate values.",
		) from exc


def _budgeted(tree: nodes.Template) -> nodes.Template:
	"""Routes every for loop's iterable through ``counted``, so each item takes a step."""
	for loop in tree.find_all(nodes.For):
		counted = nodes.Call(nodes.EnvironmentAttribute("counted"), [loop.iter], [], None, None)
		loop.iter = counted.set_lineno(loop.iter.lineno)
	return tree


def _compile_fields(selection: Sequence[str]) -> tuple[tuple[str, tuple[str | int, ...]], ...]:
	"""Parses ``path`` or ``name=path`` entries; without a name the value keeps its place in the tree."""
	compiled = []
	for entry in selection:
		if not entry or not entry.strip():
			continue
		name, equals, path_text = entry.partition("=")
		if not equals:
			name, path_text = "", name
		try:
			compiled.append((name.strip(), parse_path(path_text)))
		except ValueError as exc:
			raise TransformError(
				f"Field selection: {exc}.", hint="List dotted paths such as data.payload.grand_total."
			) from exc
		_check_placed_indexes(*compiled[-1])
	if not compiled:
		raise TransformError("The field selection is empty.", hint="List at least one dotted path.")
	return tuple(compiled)


def _check_placed_indexes(name: str, path: tuple[str | int, ...]) -> None:
	"""Refuses an unnamed path whose list index would pad the list with too many nulls (see _place)."""
	too_large = [key for key in path if type(key) is int and key > MAX_PLACED_INDEX]
	if not name and too_large:
		raise TransformError(
			f"Field selection: list index {too_large[0]} is too large to keep its place "
			f"(at most {MAX_PLACED_INDEX}); the list before it would be sent as nulls.",
			hint="Give the value a name instead, e.g. last_item=payload.items.250000.",
		)


def _render_envelope(transform: Transform, envelope: Envelope) -> RenderedPayload:
	return RenderedPayload(envelope.to_json().encode(), JSON_CONTENT_TYPE, _attributes(envelope), True)


def _render_structured(transform: Transform, envelope: Envelope) -> RenderedPayload:
	message = ce.to_structured_message(envelope)
	return RenderedPayload(message.body, ce.STRUCTURED_CONTENT_TYPE)


def _render_binary(transform: Transform, envelope: Envelope) -> RenderedPayload:
	message = ce.to_binary(envelope, "")
	headers = message.header_dict()
	content_type = headers.pop("content-type", envelope.data_content_type)
	return RenderedPayload(message.body, content_type, tuple(headers.items()))


def _render_template(transform: Transform, envelope: Envelope) -> RenderedPayload:
	document = envelope.to_dict()
	try:
		text = _render_capped(transform.template, document)
	except RenderError:
		raise
	except jinja2.UndefinedError as exc:
		raise RenderError(
			f"The payload template refers to a value this event lacks: {exc.message}.",
			hint="Guard it with 'is defined' or the default() filter, then retry the dead letter.",
		) from exc
	except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError) as exc:
		raise RenderError(f"The payload template failed for this event: {exc}.") from exc
	except Exception as exc:
		# Anything else a template can raise ('%' formatting: KeyError, a recursive macro:
		# RecursionError) is still this template failing on this event; escaping, it would
		# crash the worker's whole batch on every cycle.
		raise RenderError(
			f"The payload template failed for this event: {type(exc).__name__}: {exc}."
		) from exc
	if is_json_media_type(transform.content_type):
		try:
			json.loads(text)
		except ValueError as exc:
			raise RenderError(
				f"The payload template produced invalid JSON ({exc}).",
				hint="Use the json filter for values, e.g. {{ payload.customer | json }}.",
			) from exc
	return RenderedPayload(text.encode(), transform.content_type, _attributes(envelope))


def _render_capped(template: Any, document: dict[str, Any]) -> str:
	"""Renders piece by piece, stopping past MAX_OUTPUT characters.

	Rendering whole and measuring afterwards let loops build gigabytes first: no single
	repetition is refused, their product is.
	"""
	pieces, size = [], 0
	steps = _STEPS_LEFT.set(iter(range(MAX_STEPS)))
	try:
		for piece in template.generate(**document, payload=document["data"]["payload"], event=document):
			size += len(piece)
			if size > MAX_OUTPUT:
				raise RenderError(f"The payload template produced more than {MAX_OUTPUT} characters.")
			pieces.append(piece)
	finally:
		_STEPS_LEFT.reset(steps)
	return "".join(pieces)


def is_json_media_type(content_type: str) -> bool:
	"""Tells whether a body of this type must be one JSON document: subtype ``json`` or ``+json``.

	Not any subtype ending in "json": ``application/x-ndjson`` (Elasticsearch's _bulk, Loki)
	is one JSON document per line, which as a whole never parses as JSON.
	"""
	subtype = content_type.split(";")[0].strip().lower().rpartition("/")[2]
	return subtype == "json" or subtype.endswith("+json")


def _render_fields(transform: Transform, envelope: Envelope) -> RenderedPayload:
	document = envelope.to_dict()
	selected: dict[str, Any] = {}
	for name, path in transform.fields:
		value = resolve(document, path)
		if name:
			selected[name] = value
		else:
			_place(selected, path, value)
	return RenderedPayload(dumps(selected).encode(), JSON_CONTENT_TYPE, _attributes(envelope))


def _place(tree: dict[str, Any], path: Sequence[str | int], value: Any) -> None:
	"""Puts ``value`` at its place in ``tree`` the way jq's ``setpath`` does.

	A list index builds a list, not an object keyed "0": ``payload.items.2.item`` gives
	``{"items": [null, null, {"item": ...}]}``, so the receiver sees the shape the event has.
	"""
	node: Any = tree
	for key, following in itertools.pairwise(path):
		node = _child(node, key, [] if type(following) is int else {})
	_child(node, path[-1], value, replace=True)


def _child(node: Any, key: str | int, empty: Any, replace: bool = False) -> Any:
	"""Returns ``node[key]``, first set to ``empty`` when absent, of another kind, or ``replace``."""
	if type(key) is int:
		node.extend([None] * (key + 1 - len(node)))
	current = node[key] if type(key) is int else node.get(key)
	if replace or type(current) is not type(empty):
		node[key] = current = empty
	return current


def _attributes(envelope: Envelope) -> tuple[tuple[str, str], ...]:
	return tuple(ce.to_attributes(envelope).items())


RENDERERS = {
	ENVELOPE: _render_envelope,
	STRUCTURED: _render_structured,
	BINARY: _render_binary,
	TEMPLATE: _render_template,
	FIELDS: _render_fields,
}
