"""An AsyncAPI 3.0 document of the event bus, generated from catalog entries and the topic naming rule.

* one **channel** per topic (address = the Kafka topic), listing the messages sent on it;
* one **message** per event type: the payload is the whole Kafka message value, i.e. the seed
  envelope with ``type`` fixed and ``data.payload`` described by the event's schema; the
  headers are the CloudEvents Kafka binding headers (``ce_*``) the fabric adds;
* **operations**: ``send`` by the owner of a published event, ``receive`` by each consumer
  (and by the owner of a consumed event), tagged with the module.

AsyncAPI schemas are draft-07, so payload schemas are converted (``dialect.to_draft07``):
``$ref``s inlined, ``$defs`` and ``$schema`` dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cauldron_fabric.core.envelope import JSON_CONTENT_TYPE, SPEC_VERSION
from cauldron_fabric.core.naming import DEFAULT_TOPIC_TEMPLATE, topic_for
from cauldron_fabric.core.schema.catalog import MODULES, CatalogEntry
from cauldron_fabric.core.schema.dialect import to_draft07
from cauldron_fabric.core.schema.errors import InvalidSchema
from cauldron_fabric.core.schema.validation import data_schema_uri

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
HEADERS_SCHEMA = "CloudEventsKafkaHeaders"
_KEY_ILLEGAL = re.compile(r"[^\w.\-]+")
_TEXT = {"type": "string", "minLength": 1}
_OPTIONAL_TEXT = {"type": ["string", "null"]}


def default_topic(entry: CatalogEntry) -> str:
	"""Returns the topic of an event under the default naming rule (``cauldron.{domain}``)."""
	return topic_for(DEFAULT_TOPIC_TEMPLATE, entry.type, entry.entity or "event", None)


def cloudevents_headers_schema() -> dict[str, Any]:
	"""Returns the schema of the ``ce_*`` headers that make each Kafka message a binary-mode CloudEvent."""
	text = {"type": "string"}
	return {
		"type": "object",
		"description": "CloudEvents 1.0 Kafka protocol binding (binary content mode); the value is the envelope.",
		"required": ["ce_specversion", "ce_id", "ce_type", "ce_source", "content-type"],
		"properties": {
			"ce_specversion": {"type": "string", "const": SPEC_VERSION},
			"ce_id": {**text, "description": "The envelope's id."},
			"ce_type": {**text, "description": "The event type, e.g. user.login."},
			"ce_source": {**text, "description": "The producing site or service."},
			"ce_time": {**text, "format": "date-time"},
			"ce_subject": {**text, "description": "data.entity/data.entityId"},
			"ce_dataschema": {
				**text,
				"description": "The schema version checked: urn:cauldron:schema:<type>:<version>.",
			},
			"ce_correlationid": text,
			"ce_causationid": text,
			"ce_userid": text,
			"ce_tenantid": text,
			"content-type": {"type": "string", "const": JSON_CONTENT_TYPE},
		},
	}


def payload_schema(entry: CatalogEntry) -> dict[str, Any]:
	"""Returns the draft-07 schema of an event's payload, or, for a schema that cannot be inlined
	(a recursive ``$ref``), an object pointing to the version in the schema registry.

	One such schema, registered by an admin, made the whole document fail for every reader.
	"""
	try:
		return to_draft07(entry.schema)
	except InvalidSchema as exc:
		return {
			"type": "object",
			"description": (
				f"The schema of {entry.type} cannot be written out here ({'; '.join(exc.problems)}): "
				f"read it from the schema registry as {data_schema_uri(entry.type, entry.version)}."
			),
		}


def envelope_schema(entry: CatalogEntry) -> dict[str, Any]:
	"""Returns the draft-07 schema of a whole message value (the envelope) carrying this event."""
	payload = payload_schema(entry)
	action: dict[str, Any] = {"type": "string", "minLength": 1}
	if entry.actions:
		action["examples"] = list(entry.actions)
	return {
		"type": "object",
		"required": ["id", "type", "source", "time", "specVersion", "data"],
		"properties": {
			"id": _TEXT,
			"type": {"type": "string", "const": entry.type},
			"source": _TEXT,
			"time": {"type": "string", "format": "date-time"},
			"dataContentType": {"type": "string", "const": JSON_CONTENT_TYPE},
			"specVersion": {"type": "string", "const": SPEC_VERSION},
			"dataSchema": {
				"type": "string",
				"description": "The schema version the payload was checked against.",
			},
			"data": {
				"type": "object",
				"required": ["entity", "entityId", "action", "payload"],
				"properties": {
					"entity": {**_TEXT, "description": entry.entity or "The entity type."},
					"entityId": _TEXT,
					"action": action,
					"payload": payload,
				},
			},
			"metadata": {
				"type": "object",
				"properties": {
					key: _OPTIONAL_TEXT for key in ("correlationId", "causationId", "userId", "tenantId")
				},
			},
		},
	}


def example_envelope(entry: CatalogEntry, payload: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
	"""Returns a complete example message value (envelope) around one example payload."""
	entity = str(payload.get("doctype") or entry.entity or "Event")
	entity_id = payload.get("name") or next(
		(v for k, v in payload.items() if k.endswith("Id") and isinstance(v, str)), None
	)
	source = "frappe://erp.cauldron.example" if entry.owner == "core" else f"cauldron://{entry.owner}"
	return {
		"id": f"0195a1b2-7c3d-7e4f-8a9b-{index:012d}",
		"type": entry.type,
		"source": source,
		"time": "2026-03-02T10:20:00.000000Z",
		"dataContentType": JSON_CONTENT_TYPE,
		"specVersion": SPEC_VERSION,
		"dataSchema": data_schema_uri(entry.type, entry.version),
		"data": {
			"entity": entity,
			"entityId": str(entity_id or payload.get("user") or "example"),
			"action": entry.actions[0] if entry.actions else entry.type.rsplit(".", 1)[-1],
			"payload": dict(payload),
		},
		"metadata": {"correlationId": None, "causationId": None, "userId": None, "tenantId": None},
	}


def _key(text: str) -> str:
	return _KEY_ILLEGAL.sub("_", text)


def _message(entry: CatalogEntry) -> dict[str, Any]:
	examples = []
	for index, payload in enumerate(entry.examples):
		value = example_envelope(entry, payload, index)
		headers = {
			"ce_specversion": SPEC_VERSION,
			"ce_id": value["id"],
			"ce_type": entry.type,
			"ce_source": value["source"],
			"ce_time": value["time"],
			"ce_subject": f"{value['data']['entity']}/{value['data']['entityId']}",
			"ce_dataschema": value["dataSchema"],
			"content-type": JSON_CONTENT_TYPE,
		}
		examples.append({"name": f"example{index + 1}", "headers": headers, "payload": value})
	return {
		"name": entry.type,
		"title": entry.schema.get("title") or entry.type,
		"summary": entry.description,
		"contentType": JSON_CONTENT_TYPE,
		"headers": {"$ref": f"#/components/schemas/{HEADERS_SCHEMA}"},
		"payload": envelope_schema(entry),
		"correlationId": {"location": "$message.payload#/metadata/correlationId"},
		"tags": [{"name": entry.owner}],
		"bindings": {
			"kafka": {
				"key": {
					"type": "string",
					"description": "data.entity/data.entityId: keeps one entity's events in order.",
				},
				"bindingVersion": KAFKA_BINDING_VERSION,
			}
		},
		"examples": examples,
		"x-dataschema": data_schema_uri(entry.type, entry.version),
		"x-direction": entry.direction,
	}


def asyncapi_document(
	entries: Iterable[CatalogEntry],
	topic_of: Callable[[CatalogEntry], str] = default_topic,
	*,
	title: str = "Cauldron event bus",
	version: str = "1.0.0",
	servers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
	"""Returns the AsyncAPI 3.0 document of ``entries``; ``servers`` maps a name to a Kafka ``host:port``."""
	channels: dict[str, Any] = {}
	operations: dict[str, Any] = {}
	messages: dict[str, Any] = {}
	for entry in sorted(entries, key=lambda e: e.type):
		topic = topic_of(entry)
		channel_id, message_id = _key(topic), _key(entry.type)
		channel = channels.setdefault(
			channel_id,
			{"address": topic, "title": topic, "description": f"Kafka topic {topic}.", "messages": {}},
		)
		channel["messages"][message_id] = {"$ref": f"#/components/messages/{message_id}"}
		messages[message_id] = _message(entry)
		for action, module in _operations(entry):
			operations[_key(f"{module}.{action}.{entry.type}")] = {
				"action": action,
				"channel": {"$ref": f"#/channels/{channel_id}"},
				"messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_id}"}],
				"summary": f"{MODULES.get(module, module)} {'publishes' if action == 'send' else 'consumes'} {entry.type}.",
				"tags": [{"name": module}],
			}
	document: dict[str, Any] = {
		"asyncapi": ASYNCAPI_VERSION,
		"info": {
			"title": title,
			"version": version,
			"description": "Events of the Cauldron modules on the bus. Each Kafka message value is the "
			"event envelope (id, type, source, time, data, metadata); ce_* headers make it a "
			"CloudEvent in binary content mode.",
			"tags": [{"name": key, "description": name} for key, name in MODULES.items()],
		},
		"defaultContentType": JSON_CONTENT_TYPE,
		"channels": channels,
		"operations": operations,
		"components": {"schemas": {HEADERS_SCHEMA: cloudevents_headers_schema()}, "messages": messages},
	}
	if servers:
		document["servers"] = {
			_key(name): {"host": host, "protocol": "kafka", "description": f"Kafka cluster {name}."}
			for name, host in servers.items()
		}
	return document


def _operations(entry: CatalogEntry) -> list[tuple[str, str]]:
	found = [("send", entry.owner)] if entry.direction == "published" else [("receive", entry.owner)]
	found += [
		("receive", module)
		for module in entry.consumers
		if module != entry.owner or entry.direction == "published"
	]
	return list(dict.fromkeys(found))
