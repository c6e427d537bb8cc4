"""The event envelope of the source document's section 3.2, as a frozen value.

The JSON form is the seed's structure exactly::

    {"id", "type", "source", "time", "dataContentType", "specVersion",
     "data": {"entity", "entityId", "action", "payload"},
     "metadata": {"correlationId", "causationId", "userId", "tenantId"}}

``dataSchema`` is added only when the event was checked against a registered schema.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cauldron_fabric.core.errors import InvalidEnvelope
from cauldron_fabric.core.markup import has_markup
from cauldron_fabric.core.strict_json import load_json

try:  # orjson is several times faster than json: every save serialises, every relay parses.
	import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; json stays a working fallback
	orjson = None

# Dates, times and dataclasses go through _json_default, so both encoders write them alike.
ORJSON_OPTIONS = (
	(orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS)
	if orjson
	else 0
)
fast_loads = orjson.loads if orjson else json.loads

SPEC_VERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"
TYPE_PATTERN = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+\Z")
# How deep objects and arrays may nest in a payload. Serialising, schema checks and consumers
# walk it recursively: orjson refuses more than 255 levels, Python's stack gives out at a few
# hundred, and a JSON Schema check takes several frames a level. Documents nest a few levels.
MAX_PAYLOAD_DEPTH = 64


def new_event_id() -> str:
	"""Returns a time-ordered UUID (version 7) so ids sort roughly by creation time."""
	millis = time.time_ns() // 1_000_000
	rand = int.from_bytes(os.urandom(10), "big")
	value = (millis & ((1 << 48) - 1)) << 80
	value |= 0x7 << 76
	value |= ((rand >> 68) & 0xFFF) << 64
	value |= 0b10 << 62
	value |= rand & ((1 << 62) - 1)
	# What str(uuid.UUID(int=value)) gives, without building the UUID object (half the cost).
	digits = f"{value:032x}"
	return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def utc_now_iso() -> str:
	"""Returns the current UTC time as ISO-8601 with microseconds and a ``Z`` suffix."""
	# format_time's result for a UTC time, without converting it to UTC again.
	return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


def format_time(moment: dt.datetime) -> str:
	"""Formats an aware or naive-UTC datetime as ISO-8601 ``Z`` time."""
	if moment.tzinfo is not None:
		moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
	return moment.isoformat(timespec="microseconds") + "Z"


# RFC 3339's date-time (CloudEvents' time): a strict profile of ISO 8601, which fromisoformat
# goes well beyond (basic format, week dates, offsets without a colon).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def is_rfc3339(value: str) -> bool:
	"""Tells whether ``value`` is an RFC 3339 timestamp such as ``2026-11-27T14:00:00Z``."""
	if not _RFC3339.fullmatch(value):
		return False
	try:
		parse_time(value)
	except ValueError:  # 2026-02-30 and the like
		return False
	return True


def parse_time(value: str) -> dt.datetime:
	"""Parses an RFC 3339 timestamp into an aware datetime; raises ValueError when it is not one."""
	text = value.strip()
	if text.endswith(("Z", "z")):
		text = text[:-1] + "+00:00"
	moment = dt.datetime.fromisoformat(text)
	if moment.tzinfo is None:
		raise ValueError(f"timestamp {value!r} has no time zone")
	return moment


# Longest event id or type: the Event Log, delivery and processed-event tables keep them in
# varchar(140) columns.
KEY_LENGTH = 140


@dataclass(frozen=True, slots=True)
class EventData:
	"""What happened and to which entity."""

	entity: str
	entity_id: str
	action: str
	payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventMetadata:
	"""Who caused the event and which conversation it belongs to."""

	correlation_id: str | None = None
	causation_id: str | None = None
	user_id: str | None = None
	tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
	"""One event, immutable, in the source document's standard structure."""

	id: str
	type: str
	source: str
	time: str
	data: EventData
	metadata: EventMetadata = field(default_factory=EventMetadata)
	data_content_type: str = JSON_CONTENT_TYPE
	spec_version: str = SPEC_VERSION
	data_schema: str | None = None

	@property
	def partition_key(self) -> str:
		"""Returns the key that keeps one entity's events in order (Kafka message key)."""
		return f"{self.data.entity}/{self.data.entity_id}"

	def with_schema(self, data_schema: str) -> Envelope:
		"""Returns a copy that records the schema version the event was checked against."""
		# Every field by hand: dataclasses.replace walks the fields on each call, and every
		# checked event is copied here (test_envelope compares the two).
		return Envelope(
			self.id,
			self.type,
			self.source,
			self.time,
			self.data,
			self.metadata,
			self.data_content_type,
			self.spec_version,
			data_schema,
		)

	def to_dict(self) -> dict[str, Any]:
		"""Returns the JSON-ready dict in the seed's exact key order and spelling."""
		body: dict[str, Any] = {
			"id": self.id,
			"type": self.type,
			"source": self.source,
			"time": self.time,
			"dataContentType": self.data_content_type,
			"specVersion": self.spec_version,
			"data": {
				"entity": self.data.entity,
				"entityId": self.data.entity_id,
				"action": self.data.action,
				"payload": self.data.payload,
			},
			"metadata": {
				"correlationId": self.metadata.correlation_id,
				"causationId": self.metadata.causation_id,
				"userId": self.metadata.user_id,
				"tenantId": self.metadata.tenant_id,
			},
		}
		if self.data_schema:
			body["dataSchema"] = self.data_schema
		return body

	def to_json(self) -> str:
		"""Serialises the envelope; dates, decimals and sets in the payload become JSON values."""
		return dumps(self.to_dict())

	@classmethod
	def from_dict(cls, body: Any) -> Envelope:
		"""Builds an envelope from its JSON form; raises InvalidEnvelope listing every defect."""
		problems: list[str] = []
		if not isinstance(body, Mapping):
			raise InvalidEnvelope([f"expected a JSON object, got {type(body).__name__}"])
		for key in ("id", "type", "source", "time"):
			_require_text(body, key, key, problems)
		for key in ("id", "type"):  # stored, tracked and deduplicated in 140-character columns
			if isinstance(body.get(key), str) and len(body[key]) > KEY_LENGTH:
				problems.append(
					f"'{key}' is {len(body[key])} characters long; at most {KEY_LENGTH} are allowed"
				)
		if isinstance(body.get("id"), str) and has_markup(body["id"]):
			# Kept in columns Desk lists and renders as HTML (Event Log, Processed Event), written
			# with SQL that Frappe's sanitizing save never sees: markup there would run in Desk.
			problems.append("'id' may not contain < or >")
		if isinstance(body.get("type"), str) and not TYPE_PATTERN.match(body["type"]):
			problems.append(
				f"'type' {body['type']!r} must be dot-separated lower-case words such as 'sales_invoice.submitted'"
			)
		if isinstance(body.get("time"), str):
			try:
				parse_time(body["time"])
			except ValueError:
				problems.append(f"'time' {body['time']!r} is not an ISO-8601 timestamp with a time zone")
		spec = body.get("specVersion", SPEC_VERSION)
		if spec != SPEC_VERSION:
			problems.append(f"'specVersion' must be {SPEC_VERSION!r}, got {spec!r}")
		data = body.get("data")
		if not isinstance(data, Mapping):
			problems.append("'data' must be an object with entity, entityId, action and payload")
			data = {}
		for key in ("entity", "entityId", "action"):
			_require_text(data, key, f"data.{key}", problems)
		payload = data.get("payload", {})
		if payload is None:
			payload = {}
		if not isinstance(payload, Mapping):
			problems.append("'data.payload' must be an object")
		elif json_depth(payload) > MAX_PAYLOAD_DEPTH:
			problems.append(
				f"'data.payload' nests objects and arrays more than {MAX_PAYLOAD_DEPTH} levels deep; "
				"flatten it or send nested parts as JSON text"
			)
		metadata = body.get("metadata")
		if metadata is None:
			metadata = {}
		elif not isinstance(metadata, Mapping):
			problems.append("'metadata' must be an object")
			metadata = {}
		for key in ("correlationId", "causationId", "userId", "tenantId"):
			value = metadata.get(key)
			if value is not None and not isinstance(value, str):
				problems.append(f"'metadata.{key}' must be a string or null")
		for key in ("dataContentType", "dataSchema"):
			value = body.get(key)
			if value is not None and not isinstance(value, str):
				problems.append(f"'{key}' must be a string when given, not {type(value).__name__}")
		if problems:
			raise InvalidEnvelope(problems)
		return cls(
			id=body["id"],
			type=body["type"],
			source=body["source"],
			time=body["time"],
			data=EventData(
				entity=data["entity"], entity_id=data["entityId"], action=data["action"], payload=payload
			),
			metadata=EventMetadata(
				correlation_id=metadata.get("correlationId"),
				causation_id=metadata.get("causationId"),
				user_id=metadata.get("userId"),
				tenant_id=metadata.get("tenantId"),
			),
			data_content_type=body.get("dataContentType") or JSON_CONTENT_TYPE,
			spec_version=spec,
			data_schema=body.get("dataSchema"),
		)

	@classmethod
	def from_json(cls, text: str | bytes) -> Envelope:
		"""Parses JSON text; raises InvalidEnvelope when it is not JSON or not an envelope."""
		return cls.from_dict(load_json(text))


def json_depth(value: Any) -> int:
	"""Returns how deep objects and arrays nest in a JSON value (the value itself being level 1;
	a scalar, 0), by a loop: it must measure what recursion cannot walk."""
	deepest = 0
	pending = [(value, 1)]
	while pending:
		item, depth = pending.pop()
		# Concrete types first: a check against the Mapping ABC costs several times more, and a
		# consumer reads every event's payload through here.
		if isinstance(item, dict):
			children = item.values()
		elif isinstance(item, list | tuple):
			children = item
		elif isinstance(item, Mapping):
			children = item.values()
		else:
			continue
		deepest = max(deepest, depth)
		for child in children:
			if not isinstance(child, _JSON_SCALARS):
				pending.append((child, depth + 1))
	return deepest


_JSON_SCALARS = (str, int, float, type(None))


def _require_text(body: Mapping, key: str, label: str, problems: list[str]) -> None:
	value = body.get(key)
	if not isinstance(value, str) or not value.strip():
		problems.append(f"'{label}' is required and must be a non-empty string")


def _json_default(value: Any) -> Any:
	if isinstance(value, dt.datetime):
		return value.isoformat()
	if isinstance(value, dt.date | dt.time):
		return value.isoformat()
	if isinstance(value, dt.timedelta):
		return str(value)
	if isinstance(value, decimal.Decimal):
		return float(value)
	if isinstance(value, set | frozenset | tuple):
		return list(value)
	if isinstance(value, bytes):
		return value.decode("utf-8", "replace")
	if isinstance(value, Mapping):
		return dict(value)
	return str(value)


def _finite(value: Any) -> Any:
	"""Returns ``value`` with NaN and infinite floats, at any depth, replaced by None.

	JSON has no such numbers: the standard library writes ``NaN`` tokens that orjson, the
	relay, consumers and the CloudEvents SDK refuse, where orjson itself writes null.
	"""
	if isinstance(value, float):
		return value if math.isfinite(value) else None
	if isinstance(value, Mapping):
		return {key: _finite(item) for key, item in value.items()}
	if isinstance(value, list | tuple):
		return [_finite(item) for item in value]
	return value


def dumps(value: Any) -> str:
	"""Serialises to compact JSON, turning dates, decimals and sets into JSON values."""
	if orjson is not None:
		try:
			return orjson.dumps(value, default=_json_default, option=ORJSON_OPTIONS).decode()
		except TypeError:  # integers beyond 64 bits, lone surrogates: the stdlib copes or says why
			pass
	return json.dumps(
		_finite(value),
		default=lambda item: _finite(_json_default(item)),
		separators=(",", ":"),
		ensure_ascii=False,
		allow_nan=False,
	)
