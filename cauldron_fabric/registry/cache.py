"""Registered schemas as this process knows them: compiled once, looked up without a query.

``record()`` runs on every document save, so the lookup of an event type's schema must cost
a dict access. Each process keeps, per site, the compiled latest version of every subject it
has met (and the versions consumed events name), filled from the database on first use.

Invalidation is one Redis key per site, the registry's *stamp*: every registration, deletion
or subject removal writes a new random stamp after its transaction commits. A process reads
the stamp at most once per request or job (and every ``RECHECK_SECONDS`` in long-running
loops such as consumers) and starts afresh when it changed.

A request that sees a new stamp may still read the database through a snapshot older than
the change (REPEATABLE READ), so what it loads is kept for that request only; the next
request, whose transaction starts after the change was committed, fills the shared cache.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import frappe

from cauldron_fabric.core.schema import CompiledSchema, data_schema_uri
from cauldron_fabric.emit.held import held_now, hold_until_commit

STAMP_KEY = "fabric_schema_registry_stamp"
# The open transaction's registry changes, announced after it commits, and its own view of them.
SCHEMA_CHANGES = "fabric_schema_changes"
OWN_VIEW = "view"
RECHECK_SECONDS = 5.0
SCHEMA = "Event Schema"


@dataclass(frozen=True, slots=True)
class Registered:
	"""One registered schema version, compiled and ready to validate."""

	subject: str
	version: int
	compiled: CompiledSchema
	data_schema: str


@dataclass
class SiteSchemas:
	"""What one process knows of one site's registry under one stamp; None marks "no schema"."""

	stamp: str | None
	latest: dict[str, Registered | None] = field(default_factory=dict)
	versions: dict[tuple[str, int], Registered | None] = field(default_factory=dict)
	derived: set[str] = field(default_factory=set)


# site -> the cache shared by the requests this process serves
_SHARED: dict[str, SiteSchemas] = {}


def site_schemas() -> SiteSchemas:
	"""Returns this request's view of the registry, reading the stamp at most once per request."""
	own = held_now(SCHEMA_CHANGES)
	if own:
		return own[OWN_VIEW]
	local = getattr(frappe.local, "fabric_schemas", None)
	now = time.monotonic()
	if local is not None and now - frappe.local.fabric_schemas_checked < RECHECK_SECONDS:
		return local
	site = frappe.local.site
	try:
		stamp = _read_stamp()
	except Exception:
		# Redis unreachable: still validate, from a cache this request throws away.
		_SHARED.pop(site, None)
		return _use(SiteSchemas(stamp=None), now)
	shared = _SHARED.get(site)
	if shared is not None and shared.stamp == stamp:
		return _use(shared, now)
	_SHARED[site] = SiteSchemas(stamp=stamp)
	return _use(SiteSchemas(stamp=stamp), now)


def _use(schemas: SiteSchemas, now: float) -> SiteSchemas:
	frappe.local.fabric_schemas = schemas
	frappe.local.fabric_schemas_checked = now
	return schemas


def _read_stamp() -> str | None:
	value = frappe.cache.get(frappe.cache.make_key(STAMP_KEY))
	return value.decode() if isinstance(value, bytes) else value


def latest_schema(subject: str) -> Registered | None:
	"""Returns the latest registered version of ``subject``, or None when it has none."""
	schemas = site_schemas()
	try:
		return schemas.latest[subject]
	except KeyError:
		pass
	found = _load(subject, None)
	schemas.latest[subject] = found
	if found is not None:
		schemas.versions[(subject, found.version)] = found
	return found


def schema_version(subject: str, version: int) -> Registered | None:
	"""Returns one registered version of ``subject``, or None when it is not registered."""
	schemas = site_schemas()
	key = (subject, version)
	try:
		return schemas.versions[key]
	except KeyError:
		pass
	found = schemas.versions[key] = _load(subject, version)
	return found


def _load(subject: str, version: int | None) -> Registered | None:
	if not frappe.db.table_exists(SCHEMA):
		# The app is being installed: nothing is registered yet.
		return None
	filters: dict[str, Any] = {"subject": subject}
	if version is not None:
		filters["version"] = version
	row = frappe.db.get_value(
		SCHEMA, filters, ["version", "json_schema"], as_dict=True, order_by="version desc"
	)
	if not row:
		return None
	number = int(row.version)
	compiled = CompiledSchema(json.loads(row.json_schema), subject, number, trusted=True)
	return Registered(subject, number, compiled, data_schema_uri(subject, number))


def schemas_changed() -> None:
	"""Drops what this process knows now and tells every process once the transaction commits.

	Until then this transaction reads its own uncommitted registrations into a cache of its
	own. Both are held with the after-commit callback (emit/held.py): a rollback drops them,
	also one of a commit that a before_commit callback refused, when Frappe has already
	dropped the after-rollback callbacks.
	"""
	forget_local()
	held = hold_until_commit(SCHEMA_CHANGES, _publish_new_stamp, after_commit=True)
	held[OWN_VIEW] = SiteSchemas(stamp=None)  # read afresh after each change


def forget_local() -> None:
	_SHARED.pop(frappe.local.site, None)
	frappe.local.fabric_schemas = None


def _publish_new_stamp() -> None:
	frappe.cache.set(frappe.cache.make_key(STAMP_KEY), uuid.uuid4().hex)
	forget_local()
