"""The seven compatibility modes of Confluent Schema Registry, for JSON Schema.

* ``BACKWARD``: consumers on the new schema can read events written with the latest old one
  (so consumers upgrade first). The default.
* ``FORWARD``: consumers on the latest old schema can read events written with the new one
  (so producers upgrade first).
* ``FULL``: both.
* ``*_TRANSITIVE``: the same against every earlier version, not only the latest.
* ``NONE``: no check.

``check_compatibility`` is a dry run: it returns every reason a change breaks readers, each with
the schema path, the rule (``rules.RULES``) and a message naming the versions involved. The
Frappe layer calls it before registering a version and refuses the version when it is not
compatible (``errors.IncompatibleSchema``).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.schema.dialect import check_schema
from cauldron_fabric.core.schema.diff import Comparison, Difference, Side
from cauldron_fabric.core.schema.errors import InvalidSchema

BACKWARD_CHECK = "backward"
FORWARD_CHECK = "forward"


class CompatibilityMode(str, enum.Enum):
	"""How a new schema version must relate to earlier ones."""

	BACKWARD = "BACKWARD"
	BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
	FORWARD = "FORWARD"
	FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
	FULL = "FULL"
	FULL_TRANSITIVE = "FULL_TRANSITIVE"
	NONE = "NONE"

	@property
	def transitive(self) -> bool:
		"""Tells whether the new schema is checked against every earlier version."""
		return self.value.endswith("_TRANSITIVE")

	@property
	def checks(self) -> tuple[str, ...]:
		"""Returns the directions checked: ``backward`` (new reads old), ``forward`` (old reads new)."""
		if self is CompatibilityMode.NONE:
			return ()
		if self.value.startswith("BACKWARD"):
			return (BACKWARD_CHECK,)
		if self.value.startswith("FORWARD"):
			return (FORWARD_CHECK,)
		return (BACKWARD_CHECK, FORWARD_CHECK)


DEFAULT_MODE = CompatibilityMode.BACKWARD


def parse_mode(value: str | CompatibilityMode | None) -> CompatibilityMode:
	"""Returns the mode named by ``value`` (any case; empty means the default BACKWARD)."""
	if isinstance(value, CompatibilityMode):
		return value
	if not value:
		return DEFAULT_MODE
	try:
		return CompatibilityMode(str(value).strip().upper())
	except ValueError:
		raise ConfigurationError(
			f"Unknown compatibility mode {value!r}.",
			hint=f"Use one of {', '.join(m.value for m in CompatibilityMode)}.",
		) from None


@dataclass(frozen=True, slots=True)
class Reason:
	"""One difference between the new schema and an earlier version.

	``path`` points into the schemas (``#/properties/items/items/properties/qty/maximum``);
	``rule`` is the difference's name; ``message`` says what changed and whom it breaks;
	``version`` is the earlier version compared with; ``direction`` is ``backward`` (the new
	schema reads events of that version) or ``forward`` (that version reads the new schema's).
	"""

	path: str
	rule: str
	message: str
	version: int | None = None
	direction: str = BACKWARD_CHECK


@dataclass(frozen=True, slots=True)
class CompatibilityResult:
	"""The outcome of a check: every breaking reason, and the harmless changes found on the way."""

	compatible: bool
	mode: CompatibilityMode
	reasons: tuple[Reason, ...] = ()
	changes: tuple[Reason, ...] = ()
	checked_versions: tuple[int, ...] = ()

	def to_dict(self) -> dict[str, Any]:
		"""Returns a JSON-ready form (for the API and the Desk dry-run dialog)."""
		return {
			"compatible": self.compatible,
			"mode": self.mode.value,
			"checkedVersions": list(self.checked_versions),
			"reasons": [_reason_dict(r) for r in self.reasons],
			"changes": [_reason_dict(r) for r in self.changes],
		}


def _reason_dict(reason: Reason) -> dict[str, Any]:
	return {
		"path": reason.path,
		"rule": reason.rule,
		"message": reason.message,
		"version": reason.version,
		"direction": reason.direction,
	}


def check_compatibility(
	new_schema: Any,
	previous_schemas: Sequence[Any],
	mode: str | CompatibilityMode | None = DEFAULT_MODE,
	*,
	versions: Sequence[int] | None = None,
) -> CompatibilityResult:
	"""Checks ``new_schema`` against earlier versions (oldest first) and returns every reason it breaks.

	``versions`` numbers the earlier schemas (default 1, 2, ...). Raises InvalidSchema when the
	new schema, or an earlier one, is not a usable JSON Schema.
	"""
	mode = parse_mode(mode)
	check_schema(new_schema)
	numbers = list(versions) if versions is not None else list(range(1, len(previous_schemas) + 1))
	if len(numbers) != len(previous_schemas):
		raise ValueError("versions must number every previous schema")
	pairs = list(zip(numbers, previous_schemas, strict=True))
	if not mode.transitive:
		pairs = pairs[-1:]
	if not mode.checks:
		pairs = []
	reasons: list[Reason] = []
	changes: list[Reason] = []
	for version, old_schema in pairs:
		try:
			check_schema(old_schema)
		except InvalidSchema as exc:
			raise InvalidSchema([f"version {version}: {p}" for p in exc.problems]) from exc
		for direction in mode.checks:
			for found in _differences(new_schema, old_schema, version, direction):
				reason = Reason(found.path, found.rule, found.message, version, direction)
				(changes if found.compatible else reasons).append(reason)
	return CompatibilityResult(
		compatible=not reasons,
		mode=mode,
		reasons=tuple(reasons),
		changes=tuple(changes),
		checked_versions=tuple(v for v, _ in pairs),
	)


def _differences(new_schema: Any, old_schema: Any, version: int, direction: str) -> list[Difference]:
	old_name = f"version {version}"
	if direction == BACKWARD_CHECK:
		writer = Side(old_schema, old_name, f"producers still on {old_name}")
		reader = Side(new_schema, "the new schema", "consumers on the new schema")
	else:
		writer = Side(new_schema, "the new schema", "producers on the new schema")
		reader = Side(old_schema, old_name, f"consumers still on {old_name}")
	return Comparison(writer, reader).run()
