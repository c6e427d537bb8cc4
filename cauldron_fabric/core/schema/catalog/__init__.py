"""The event catalog: a version-1 schema for every event of the source document's section 6.

Each event type is one JSON file beside this module (``user.login.json``...), data only:

* ``type``: the event type, which is also the schema registry subject;
* ``owner``: the module responsible for the schema (a key of ``MODULES``): the publisher when
  section 6 names one, else the module that consumes the event from outside Cauldron;
* ``direction``: ``published`` when the owner publishes the event, ``consumed`` when the owner
  only consumes it (the producer is a source system, a CI server, a market feed...);
* ``consumers``: the other modules section 6 lists as consuming the event;
* ``description``, ``entity`` and ``actions`` (what ``data.entity`` and ``data.action`` carry);
* ``schema``: the JSON Schema (draft 2020-12) of the envelope's ``data.payload``;
* ``examples``: payloads that validate (the test suite checks every one).

The fabric's own events (``business.transaction``, ``user.login``, ``user.logout``,
``system.change``, ``system.status``, ``approval.response``) are owned by ``core``. Document
lifecycle events get their schemas from the DocType's fields (``doctype_schema``), not from here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cauldron_fabric.core.envelope import TYPE_PATTERN
from cauldron_fabric.core.schema.dialect import check_schema
from cauldron_fabric.core.schema.errors import InvalidSchema

CATALOG_DIR = Path(__file__).parent
MODULES = {
	"core": "Core (Frappe/ERPNext)",
	"lore": "Lore",
	"aegis_protocol": "Aegis Protocol",
	"synapse": "Synapse",
	"command_and_cauldron": "Command & Cauldron",
	"agents": "AI Agents",
}
DIRECTIONS = ("published", "consumed")
_KEYS = ("type", "version", "owner", "direction", "description", "schema", "examples")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
	"""One event type of the catalog with its schema, owner and examples."""

	type: str
	version: int
	owner: str
	direction: str
	description: str
	schema: Mapping[str, Any]
	examples: tuple[Mapping[str, Any], ...]
	consumers: tuple[str, ...] = ()
	entity: str = ""
	actions: tuple[str, ...] = field(default_factory=tuple)

	@property
	def subject(self) -> str:
		"""Returns the schema registry subject, which is the event type."""
		return self.type

	@property
	def owner_title(self) -> str:
		"""Returns the owning module's display name (``Aegis Protocol``), or the owner as given."""
		return MODULES.get(self.owner, self.owner)

	@classmethod
	def from_dict(cls, body: Mapping[str, Any], origin: str = "catalog") -> CatalogEntry:
		"""Builds an entry from its JSON form; raises InvalidSchema naming ``origin`` and every defect."""
		problems = [f"'{key}' is missing" for key in _KEYS if key not in body]
		if not problems:
			problems += _problems(body)
		if problems:
			raise InvalidSchema([f"{origin}: {p}" for p in problems])
		return cls(
			type=body["type"],
			version=int(body["version"]),
			owner=body["owner"],
			direction=body["direction"],
			description=body["description"],
			schema=body["schema"],
			examples=tuple(body["examples"]),
			consumers=tuple(body.get("consumers") or ()),
			entity=body.get("entity") or "",
			actions=tuple(body.get("actions") or ()),
		)


def _problems(body: Mapping[str, Any]) -> list[str]:
	problems = []
	if not isinstance(body["type"], str) or not TYPE_PATTERN.match(body["type"]):
		problems.append(f"type {body['type']!r} is not an event type such as 'user.login'")
	if not isinstance(body["version"], int) or body["version"] < 1:
		problems.append("version must be a positive integer")
	for module in [body["owner"], *(body.get("consumers") or ())]:
		if module not in MODULES:
			problems.append(f"module {module!r} is unknown; use one of {', '.join(MODULES)}")
	if body["direction"] not in DIRECTIONS:
		problems.append(f"direction must be 'published' or 'consumed', got {body['direction']!r}")
	if not isinstance(body["examples"], list) or not body["examples"]:
		problems.append("at least one example payload is required")
	try:
		check_schema(body["schema"])
	except InvalidSchema as exc:
		problems.extend(exc.problems)
	return problems


@functools.lru_cache(maxsize=4)
def _load(directory: Path) -> tuple[CatalogEntry, ...]:
	entries = []
	for path in sorted(directory.glob("*.json")):
		entry = CatalogEntry.from_dict(json.loads(path.read_text(encoding="utf-8")), path.name)
		if path.stem != entry.type:
			raise InvalidSchema([f"{path.name}: the file must be named after its type ({entry.type}.json)"])
		entries.append(entry)
	return tuple(entries)


def load_catalog(directory: str | Path | None = None) -> list[CatalogEntry]:
	"""Returns every catalog entry, sorted by event type; raises InvalidSchema for a defective file."""
	return list(_load(Path(directory) if directory else CATALOG_DIR))


def catalog_entry(event_type: str) -> CatalogEntry | None:
	"""Returns the catalog entry of one event type, or None when the catalog has none."""
	return next((e for e in load_catalog() if e.type == event_type), None)
