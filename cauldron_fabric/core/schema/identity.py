"""When two schemas, or two JSON values, are the same, and the ``$id`` the registry gives a version.

A schema's fingerprint is the hash of its canonical JSON, so the same content sent twice is the
same version; the registry's own ``$id`` at the top of a schema is a name, not content.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

# The ``$id`` the registry gives a version: urn:cauldron:schema:<subject>:<version>, the
# ``dataSchema`` reference of events checked against it. "\Z", not "$", which takes a trailing newline.
REGISTRY_ID = re.compile(r"^urn:cauldron:schema:([a-z0-9_]+(?:\.[a-z0-9_]+)+):([1-9][0-9]*)\Z")


def canonical_json(value: Any) -> str:
	"""Serialises with sorted keys and no spaces, so equal schemas give equal text."""
	return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def schema_fingerprint(schema: Any) -> str:
	"""Returns the SHA-256 of the schema's canonical JSON: the same content, the same fingerprint.

	A registry ``$id`` at the top is not content (see with_registry_id): the same schema sent
	again under another version's ``$id`` is the version already registered.
	"""
	return hashlib.sha256(canonical_json(without_registry_id(schema)).encode()).hexdigest()


def without_registry_id(schema: Any) -> Any:
	"""Returns the schema without a top-level ``$id`` of the registry's own (REGISTRY_ID)."""
	if not _has_registry_id(schema):
		return schema
	return {key: value for key, value in schema.items() if key != "$id"}


def with_registry_id(schema: Any, uri: str) -> Any:
	"""Returns the schema with its registry ``$id``, if it has one, naming ``uri`` instead.

	The registry numbers versions: a schema written as version 1 and registered as the
	subject's third (an edited catalog schema after an upgrade, a copy of another subject's)
	would otherwise tell code generators and caches keyed by ``$id`` that it is version 1.
	"""
	if not _has_registry_id(schema):
		return schema
	return {key: (uri if key == "$id" else value) for key, value in schema.items()}


def _has_registry_id(schema: Any) -> bool:
	return isinstance(schema, Mapping) and bool(REGISTRY_ID.match(str(schema.get("$id", ""))))


def json_equal(left: Any, right: Any) -> bool:
	"""Compares JSON values the way JSON Schema does: ``1 == 1.0`` but ``true != 1``."""
	if isinstance(left, bool) or isinstance(right, bool):
		return isinstance(left, bool) and isinstance(right, bool) and left == right
	if isinstance(left, str) or isinstance(right, str):
		return left == right
	if isinstance(left, list) and isinstance(right, list):
		return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
	if isinstance(left, Mapping) and isinstance(right, Mapping):
		return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
	return left == right
