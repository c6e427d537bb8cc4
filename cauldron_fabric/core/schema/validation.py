"""Validation of events against registered schemas, with compiled validators cached per version.

A registered schema describes an event's ``data.payload``: the envelope around it (id, type,
source, time, data.entity/entityId/action, metadata) is the fabric's own structure and is
checked by ``Envelope.from_dict``. Violations are reported with JSON paths from the envelope
root (``$.data.payload.items[0].qty``) when a whole envelope is validated, and from the payload
root (``$.items[0].qty``) when a bare payload is.

A validated envelope records the version it was checked against in ``dataSchema`` (CloudEvents
``dataschema``) as ``urn:cauldron:schema:<subject>:<version>``.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from jsonschema.exceptions import ValidationError

from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.schema.dialect import FORMAT_CHECKER, check_schema, validator_class
from cauldron_fabric.core.schema.errors import SchemaViolation, Violation
from cauldron_fabric.core.schema.fastpath import compile_check
from cauldron_fabric.core.schema.identity import REGISTRY_ID, schema_fingerprint
from cauldron_fabric.core.schema.shapes import show

DATA_SCHEMA_PREFIX = "urn:cauldron:schema:"
PAYLOAD_PATH = "$.data.payload"
# "\Z", not "$": "$" also matches before a trailing newline.
_SUBJECT = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+\Z")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


def data_schema_uri(subject: str, version: int) -> str:
	"""Returns the ``dataSchema`` reference of a schema version: ``urn:cauldron:schema:<subject>:<version>``."""
	if not _SUBJECT.match(subject or ""):
		raise ValueError(f"subject {subject!r} must be an event type such as 'sales_invoice.submitted'")
	if not isinstance(version, int) or isinstance(version, bool) or version < 1:
		raise ValueError(f"version {version!r} must be a positive integer")
	return f"{DATA_SCHEMA_PREFIX}{subject}:{version}"


def parse_data_schema_uri(uri: str) -> tuple[str, int]:
	"""Returns ``(subject, version)`` from a ``dataSchema`` reference; raises ValueError for another."""
	match = REGISTRY_ID.match(uri or "")
	if not match:
		raise ValueError(f"{uri!r} is not a schema reference such as 'urn:cauldron:schema:user.login:1'")
	return match.group(1), int(match.group(2))


def json_path(parts, base: str = "$") -> str:
	"""Returns a JSON path such as ``$.items[0].qty`` for a sequence of keys and indexes."""
	text = base
	for part in parts:
		if isinstance(part, int):
			text += f"[{part}]"
		elif _IDENTIFIER.match(part):
			text += f".{part}"
		else:
			text += "[" + repr(part) + "]"
	return text


class CompiledSchema:
	"""One schema version ready to validate: a compiled yes/no check and jsonschema for the details."""

	def __init__(self, schema: Any, subject: str = "", version: int | None = None, *, trusted: bool = False):
		# ``trusted``: the schema was checked when it was registered, so it is not checked again.
		if not trusted:
			check_schema(schema)
		self.schema = schema
		self.subject = subject
		self.version = version
		cls = validator_class(schema)
		self._validator = cls(schema, format_checker=FORMAT_CHECKER)
		# None when the schema uses a keyword the compiler does not reproduce: jsonschema decides.
		self._check = compile_check(schema, FORMAT_CHECKER) or self._validator.is_valid

	@property
	def data_schema(self) -> str | None:
		"""Returns the ``dataSchema`` reference of this version (None for an unregistered schema)."""
		if not self.subject or self.version is None:
			return None
		return data_schema_uri(self.subject, self.version)

	@property
	def compiled(self) -> bool:
		"""Tells whether the fast compiled check is in use (rather than jsonschema alone)."""
		return self._check != self._validator.is_valid

	def is_valid(self, payload: Any) -> bool:
		"""Tells whether ``payload`` matches the schema."""
		return self._quick_check(payload) or not self.violations(payload)

	def _quick_check(self, payload: Any) -> bool:
		try:
			return self._check(payload)
		except RecursionError:
			return False

	def violations(self, payload: Any, base: str = "$") -> list[Violation]:
		"""Returns every violation, each with its JSON path under ``base``, the rule and what to fix."""
		found: list[Violation] = []
		try:
			for error in self._validator.iter_errors(payload):
				found.extend(_violations(error, base))
		except RecursionError:
			return [Violation(base, "depth", "the payload is nested too deeply to be checked; flatten it")]
		return found

	def validate(self, payload: Any, base: str = "$") -> None:
		"""Raises SchemaViolation listing every violation when ``payload`` does not match."""
		if self._quick_check(payload):
			return
		violations = self.violations(payload, base)
		if violations:
			raise SchemaViolation(self.subject or "the payload", self.version, violations)


class ValidatorCache:
	"""Compiled schemas by (subject, version), the least recently used dropped beyond ``max_size``.

	A registered version never changes, so a hit is served without looking at the schema again;
	``invalidate`` is for the rare case of replacing a version that was never published.
	"""

	def __init__(self, max_size: int = 1024):
		self.max_size = max_size
		self._entries: OrderedDict[tuple[str, Any], CompiledSchema] = OrderedDict()
		self._lock = threading.Lock()

	def get(self, subject: str, version: int, schema: Any) -> CompiledSchema:
		"""Returns the compiled schema of a registered version, compiling it on first use."""
		return self._get((subject, version), lambda: CompiledSchema(schema, subject, version))

	def for_schema(self, schema: Any) -> CompiledSchema:
		"""Returns a compiled schema keyed by its content hash (for schemas not registered yet)."""
		return self._get(("#", schema_fingerprint(schema)), lambda: CompiledSchema(schema))

	def _get(self, key: tuple[str, Any], build) -> CompiledSchema:
		entry = self._entries.get(key)
		if entry is not None:
			return entry
		entry = build()
		with self._lock:
			self._entries[key] = entry
			while len(self._entries) > self.max_size:
				self._entries.popitem(last=False)
		return entry

	def invalidate(self, subject: str | None = None, version: int | None = None) -> None:
		"""Drops the versions of one subject (or one version of it), or everything when no subject is given."""
		with self._lock:
			for key in list(self._entries):
				if subject is None or (key[0] == subject and version in (None, key[1])):
					del self._entries[key]

	def __len__(self) -> int:
		return len(self._entries)


DEFAULT_CACHE = ValidatorCache()


def validate_payload(
	payload: Any, schema: Any, subject: str, version: int, cache: ValidatorCache = DEFAULT_CACHE
) -> None:
	"""Raises SchemaViolation (paths from ``$``) when a payload does not match a registered version."""
	cache.get(subject, version, schema).validate(payload)


def payload_violations(
	payload: Any, schema: Any, subject: str, version: int, cache: ValidatorCache = DEFAULT_CACHE
) -> list[Violation]:
	"""Returns every violation of a payload (empty when valid), for callers that park invalid events."""
	compiled = cache.get(subject, version, schema)
	return [] if compiled.is_valid(payload) else compiled.violations(payload)


def validate_envelope(
	envelope: Envelope | Mapping[str, Any],
	schema: Any,
	version: int,
	subject: str | None = None,
	cache: ValidatorCache = DEFAULT_CACHE,
) -> Envelope:
	"""Validates an event's ``data.payload`` and returns the envelope stamped with its ``dataSchema``.

	``subject`` defaults to the event type. A dict is parsed first, so a malformed envelope
	raises InvalidEnvelope; a payload that breaks the schema raises SchemaViolation with paths
	such as ``$.data.payload.items[0].qty``.
	"""
	if not isinstance(envelope, Envelope):
		envelope = Envelope.from_dict(envelope)
	subject = subject or envelope.type
	payload = envelope.data.payload
	cache.get(subject, version, schema).validate(
		payload if isinstance(payload, dict) else dict(payload), PAYLOAD_PATH
	)
	return envelope.with_schema(data_schema_uri(subject, version))


def _violations(error: ValidationError, base: str) -> list[Violation]:
	path = json_path(error.absolute_path, base)
	keyword, value, instance = str(error.validator), error.validator_value, error.instance
	if keyword == "required":
		names = [
			n for n in value if isinstance(instance, dict) and n not in instance and repr(n) in error.message
		]
		return [
			Violation(json_path([*error.absolute_path, n], base), "required", f"'{n}' is required; add it")
			for n in names[:1]
		] or [Violation(path, keyword, error.message)]
	if keyword == "additionalProperties" and isinstance(instance, dict):
		schema = error.schema if isinstance(error.schema, Mapping) else {}
		listed = set(schema.get("properties") or ())
		patterns = list(schema.get("patternProperties") or ())
		extras = [k for k in instance if k not in listed and not any(re.search(p, k) for p in patterns)]
		allowed = show(sorted(listed))
		return [
			Violation(
				json_path([*error.absolute_path, k], base),
				"additionalProperties",
				f"'{k}' is not allowed here; remove it (allowed: {allowed})",
			)
			for k in extras
		] or [Violation(path, keyword, error.message)]
	return [Violation(path, keyword, _advice(keyword, value, instance, error.message))]


def _advice(keyword: str, value: Any, instance: Any, default: str) -> str:
	got = show(instance)
	advice = {
		"type": lambda: f"expected {' or '.join(value) if isinstance(value, list) else value}, got {got}",
		"enum": lambda: f"{got} is not allowed; use one of {show(value)}",
		"const": lambda: f"{got} is not allowed; the value must be {show(value)}",
		"minimum": lambda: f"{got} is below the minimum {value}; send a value >= {value}",
		"maximum": lambda: f"{got} is above the maximum {value}; send a value <= {value}",
		"exclusiveMinimum": lambda: f"{got} is too small; send a value > {value}",
		"exclusiveMaximum": lambda: f"{got} is too large; send a value < {value}",
		"multipleOf": lambda: f"{got} is not a multiple of {value}",
		"minLength": lambda: f"{got} is shorter than {value} characters; lengthen it",
		"maxLength": lambda: f"{got} is longer than {value} characters; shorten it",
		"pattern": lambda: f"{got} does not match the pattern {value!r}",
		"format": lambda: f"{got} is not a valid {value}",
		"minItems": lambda: f"the list has fewer than {value} items; add items",
		"maxItems": lambda: f"the list has more than {value} items; remove items",
		"uniqueItems": lambda: "the list has duplicate items; remove the duplicates",
		"anyOf": lambda: f"{got} matches none of the allowed alternatives",
		"oneOf": lambda: f"{got} must match exactly one of the allowed alternatives",
	}.get(keyword)
	return advice() if advice else default
