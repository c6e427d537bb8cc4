"""Lossless conversion between the seed envelope and CloudEvents 1.0.

CloudEvents requires lower-case attribute names, so the seed's camelCase body is not itself a
CloudEvent. The mapping used everywhere in the fabric:

=====================  ==========================
envelope               CloudEvents attribute
=====================  ==========================
id, type, source       id, type, source
time                   time
specVersion            specversion
dataContentType        datacontenttype
dataSchema             dataschema
metadata.correlationId correlationid (extension)
metadata.causationId   causationid (extension)
metadata.userId        userid (extension)
metadata.tenantId      tenantid (extension)
data.entity/entityId   subject ("entity/entityId")
=====================  ==========================

Three wire forms:

* **Kafka default** (``to_kafka``): the message value is the seed envelope exactly and ``ce_*``
  headers make the same message a valid binary-mode CloudEvent whose data is that envelope.
* **Structured** (``to_structured``): one ``application/cloudevents+json`` document whose
  ``data`` is the envelope's ``data`` object.
* **Binary** (``to_binary``): attributes as protocol headers, the envelope's ``data`` object as
  the body; ``prefix`` picks the binding (``ce_`` Kafka, ``ce-`` HTTP, ``cloudEvents_`` AMQP).
  HTTP header values are percent-encoded UTF-8 (``binding_value``); ``from_http`` reads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from cauldron_fabric.core.envelope import (
	JSON_CONTENT_TYPE,
	SPEC_VERSION,
	Envelope,
	EventData,
	dumps,
	format_time,
)
from cauldron_fabric.core.errors import InvalidEnvelope
from cauldron_fabric.core.strict_json import load_json

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
KAFKA_PREFIX = "ce_"
HTTP_PREFIX = "ce-"
AMQP_PREFIX = "cloudEvents_"
METADATA_KEYS = {
	"correlation_id": "correlationId",
	"causation_id": "causationId",
	"user_id": "userId",
	"tenant_id": "tenantId",
}
# What the HTTP binding leaves as is: printable ASCII except space, '"' and '%' (spec 3.1.3.2).
HTTP_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in '"%')


@dataclass(frozen=True, slots=True)
class WireMessage:
	"""A message ready for a protocol: headers (name, value) and a body."""

	headers: tuple[tuple[str, str], ...]
	body: bytes

	def header_dict(self) -> dict[str, str]:
		"""Returns the headers as a dict (last value wins)."""
		return dict(self.headers)


def to_attributes(envelope: Envelope) -> dict[str, str]:
	"""Returns the CloudEvents context attributes (with extensions) of an envelope."""
	return attributes_of(envelope.to_dict())


def attributes_of(body: Mapping[str, Any]) -> dict[str, str]:
	"""Returns the CloudEvents attributes of an envelope in its JSON form."""
	return dict(attribute_items(body))


# The metadata extensions in attribute order: (attribute name, envelope metadata key).
METADATA_ATTRIBUTES = tuple((key.replace("_", ""), field) for key, field in METADATA_KEYS.items())
# Every attribute attribute_items may give, whether an event has it or not.
ATTRIBUTE_NAMES = frozenset(
	{"specversion", "id", "type", "source", "time", "subject", "dataschema"}
	| {name for name, _ in METADATA_ATTRIBUTES}
)


def attribute_items(body: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
	"""Returns the CloudEvents attributes of an envelope in its JSON form, in order, as pairs.

	The one mapping from the envelope to CloudEvents attributes. Each name comes after
	``prefix``, so that Kafka headers (kafka_headers) are built in one pass: the relay does it
	once per event on its busiest thread.
	"""
	data = body["data"]
	items = [
		(prefix + "specversion", body.get("specVersion") or SPEC_VERSION),
		(prefix + "id", body["id"]),
		(prefix + "type", body["type"]),
		(prefix + "source", body["source"]),
		(prefix + "time", body["time"]),
		(prefix + "subject", f"{data['entity']}/{data['entityId']}"),
	]
	schema = body.get("dataSchema")
	if schema:
		items.append((prefix + "dataschema", schema))
	metadata = body.get("metadata") or {}
	for name, key in METADATA_ATTRIBUTES:
		value = metadata.get(key)
		if value is not None:
			items.append((prefix + name, value))
	return items


def binding_value(prefix: str, value: str) -> str:
	"""Returns an attribute value as the binding of ``prefix`` carries it in a header.

	HTTP headers carry Latin-1 at most (requests refuses a subject such as "ToDo/漢字"), so the
	HTTP binding percent-encodes the UTF-8 bytes; Kafka and AMQP headers carry UTF-8 as is.
	"""
	return quote(value, safe=HTTP_SAFE) if prefix == HTTP_PREFIX else value


def binary_headers(attributes: Mapping[str, str], prefix: str = KAFKA_PREFIX) -> tuple[tuple[str, str], ...]:
	"""Returns attributes as binary-mode headers of one binding, with the JSON content type."""
	headers = [(prefix + name, binding_value(prefix, value)) for name, value in attributes.items()]
	headers.append(("content-type", JSON_CONTENT_TYPE))
	return tuple(headers)


def from_attributes(attributes: Mapping[str, Any], data: Any, content_type: str | None = None) -> Envelope:
	"""Builds an envelope from CloudEvents attributes and the event's data."""
	problems = [
		f"CloudEvent attribute '{key}' is missing"
		for key in ("id", "type", "source")
		if not attributes.get(key)
	]
	problems += _attribute_type_problems(attributes)
	spec = str(attributes.get("specversion") or SPEC_VERSION)
	if spec != SPEC_VERSION:
		problems.append(f"CloudEvent specversion must be {SPEC_VERSION!r}, got {spec!r}")
	if problems:
		raise InvalidEnvelope(problems)
	event_data = _event_data(attributes, data)
	body = {
		"id": str(attributes["id"]),
		"type": str(attributes["type"]),
		"source": str(attributes["source"]),
		"time": _text_time(attributes.get("time")),
		"specVersion": spec,
		"dataContentType": content_type or attributes.get("datacontenttype") or JSON_CONTENT_TYPE,
		"data": event_data,
		"metadata": {
			"correlationId": _optional_text(attributes.get("correlationid")),
			"causationId": _optional_text(attributes.get("causationid")),
			"userId": _optional_text(attributes.get("userid")),
			"tenantId": _optional_text(attributes.get("tenantid")),
		},
	}
	if attributes.get("dataschema"):
		body["dataSchema"] = str(attributes["dataschema"])
	return Envelope.from_dict(body)


# CloudEvents' own attributes are strings (``time`` a timestamp); the fabric's extensions may
# also be integers, as CloudEvents' type system allows. In structured mode a producer can send
# any JSON: an object there used to become its Python text ("{'a': 1}") without a word.
_STRING_ATTRIBUTES = ("id", "type", "source", "specversion", "datacontenttype", "dataschema", "subject")
_EXTENSIONS = ("correlationid", "causationid", "userid", "tenantid")


def _attribute_type_problems(attributes: Mapping[str, Any]) -> list[str]:
	problems = []
	for key in (*_STRING_ATTRIBUTES, *_EXTENSIONS):
		value = attributes.get(key)
		if value is None or isinstance(value, str):
			continue
		if key in _EXTENSIONS and isinstance(value, int) and not isinstance(value, bool):
			continue
		kind = "a string or an integer" if key in _EXTENSIONS else "a string"
		problems.append(f"CloudEvent attribute '{key}' must be {kind}, not a JSON {_json_kind(value)}")
	return problems


def _event_data(attributes: Mapping[str, Any], data: Any) -> dict[str, Any]:
	if isinstance(data, Mapping) and {"entity", "entityId", "action"} <= data.keys():
		return {
			"entity": data["entity"],
			"entityId": data["entityId"],
			"action": data["action"],
			"payload": data.get("payload") or {},
		}
	# A CloudEvent from another producer: derive the seed fields from subject and type.
	entity, _, entity_id = str(attributes.get("subject") or "").partition("/")
	action = str(attributes.get("type") or "").rsplit(".", 1)[-1]
	# No body (or null) is no payload, not a payload holding null.
	payload = data if isinstance(data, Mapping) else {} if data is None else {"value": data}
	return {
		"entity": entity or "unknown",
		"entityId": entity_id or str(attributes.get("id")),
		"action": action,
		"payload": payload,
	}


def _optional_text(value: Any) -> str | None:
	return None if value is None else str(value)


def _text_time(value: Any) -> str:
	if value is None:
		raise InvalidEnvelope(["CloudEvent attribute 'time' is required by the fabric"])
	if hasattr(value, "isoformat"):
		return format_time(value)
	return str(value)


def kafka_headers(envelope: Envelope | Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
	"""Returns the ``ce_*`` headers that make a message carrying the envelope a binary CloudEvent."""
	body = envelope.to_dict() if isinstance(envelope, Envelope) else envelope
	headers = attribute_items(body, KAFKA_PREFIX)
	headers.append(("content-type", JSON_CONTENT_TYPE))
	return tuple(headers)


def to_kafka(envelope: Envelope) -> WireMessage:
	"""Returns the default Kafka form: the seed envelope as value, ``ce_*`` headers around it."""
	return WireMessage(kafka_headers(envelope), envelope.to_json().encode())


def to_binary(envelope: Envelope, prefix: str = KAFKA_PREFIX) -> WireMessage:
	"""Returns binary content mode: attributes as headers, the envelope's ``data`` as body."""
	return WireMessage(
		binary_headers(to_attributes(envelope), prefix), dumps(_data_dict(envelope.data)).encode()
	)


def to_structured(envelope: Envelope) -> dict[str, Any]:
	"""Returns the structured-mode CloudEvent document (``application/cloudevents+json``)."""
	document: dict[str, Any] = dict(to_attributes(envelope))
	document["datacontenttype"] = envelope.data_content_type
	document["data"] = _data_dict(envelope.data)
	return document


def to_structured_message(envelope: Envelope) -> WireMessage:
	"""Returns structured mode as a message: one JSON document, its content type as header."""
	return WireMessage((("content-type", STRUCTURED_CONTENT_TYPE),), dumps(to_structured(envelope)).encode())


def from_structured(document: Any) -> Envelope:
	"""Builds an envelope from a structured-mode CloudEvent document (dict, str or bytes)."""
	if isinstance(document, bytes | str):
		document = load_json(document)
	if not isinstance(document, Mapping):
		raise InvalidEnvelope(["a structured CloudEvent must be a JSON object"])
	return from_attributes(document, document.get("data"))


HEADER_PREFIXES = (KAFKA_PREFIX, HTTP_PREFIX, AMQP_PREFIX.lower(), "cloudevents:")


def from_headers(
	headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None, body: bytes | str | None
) -> Envelope:
	"""Reads any of the three wire forms, whichever binding prefix the headers use.

	A body that is the seed envelope wins over headers, but headers that contradict it
	(another id or type) are refused rather than silently ignored.
	"""
	pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
	attributes: dict[str, Any] = {}
	content_type = ""
	for name, value in pairs:
		lowered = name.lower()
		prefix = next((p for p in HEADER_PREFIXES if lowered.startswith(p)), None)
		is_content_type = lowered in ("content-type", "content_type")
		if prefix is None and not is_content_type:
			continue  # another system's header (tracing, …): not ours to read
		try:
			text = value.decode() if isinstance(value, bytes) else value
		except UnicodeDecodeError as exc:
			raise InvalidEnvelope([f"header {name} is not UTF-8 text ({exc})"]) from exc
		if is_content_type:
			content_type = str(text or "")
		else:
			attribute = lowered[len(prefix) :]
			if attributes.get(attribute, text) != text:
				# One value each: read last-wins, a first ce_id unlike the body's got past the check
				# below that a header never contradicts the body.
				raise InvalidEnvelope(
					[f"header {name} is given twice with different values; a CloudEvent attribute has one"]
				)
			attributes[attribute] = text
	if content_type.startswith(STRUCTURED_CONTENT_TYPE):
		return from_structured(body or b"")
	value = load_json(body) if body else None
	if isinstance(value, Mapping) and "specVersion" in value and isinstance(value.get("data"), Mapping):
		envelope = Envelope.from_dict(value)
		for attr in ("id", "type"):
			if attributes.get(attr) not in (None, getattr(envelope, attr)):
				raise InvalidEnvelope(
					[
						f"header ce_{attr}={attributes[attr]!r} contradicts the body's {attr}={getattr(envelope, attr)!r}"
					]
				)
		return envelope
	if not attributes:
		raise InvalidEnvelope(_not_an_event(body, value))
	return from_attributes(attributes, value, content_type or None)


def _not_an_event(body: bytes | str | None, value: Any) -> list[str]:
	"""Returns why a message without ce_ headers is no event, in terms its producer can act on."""
	neither = "message is neither a fabric envelope nor a CloudEvent (no ce_ headers)"
	if not body:
		return [f"{neither}: it has no body (a Kafka tombstone?)"]
	if not isinstance(value, Mapping):
		return [f"{neither}: its body is a JSON {_json_kind(value)}, not an object"]
	try:  # an envelope with a defect: say which
		Envelope.from_dict(value)
	except InvalidEnvelope as exc:
		return [neither, *exc.problems]
	return [f"{neither}: its body lacks 'specVersion'"]


def _json_kind(value: Any) -> str:
	if isinstance(value, bool):
		return "boolean"
	if isinstance(value, int | float):
		return "number"
	if isinstance(value, Mapping):
		return "object"
	return {str: "string", list: "array", type(None): "null"}.get(type(value), type(value).__name__)


def from_http(
	headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None, body: bytes | str | None
) -> Envelope:
	"""Reads an HTTP message in any wire form, percent-decoding its ``ce-`` header values first.

	Only HTTP encodes them: the same prefix on RabbitMQ (the SDK's binding) carries UTF-8 as is,
	so ``from_headers`` cannot decode on its own.
	"""
	pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
	decoded = [
		(name, unquote(value) if name.lower().startswith(HTTP_PREFIX) else value) for name, value in pairs
	]
	return from_headers(decoded, body)


def _data_dict(data: EventData) -> dict[str, Any]:
	return {"entity": data.entity, "entityId": data.entity_id, "action": data.action, "payload": data.payload}


__all__ = [
	"AMQP_PREFIX",
	"HTTP_PREFIX",
	"KAFKA_PREFIX",
	"STRUCTURED_CONTENT_TYPE",
	"WireMessage",
	"attribute_items",
	"attributes_of",
	"binary_headers",
	"binding_value",
	"from_attributes",
	"from_headers",
	"from_http",
	"from_structured",
	"kafka_headers",
	"to_attributes",
	"to_binary",
	"to_kafka",
	"to_structured",
	"to_structured_message",
]
