"""DocTypes deleted by a migrate, an app install or an uninstall, which add no feed entry.

Desk's deletion of a DocType is seen through its feed entry (``documents.doctype_deleted``),
but Frappe adds none inside patches, installs and uninstalls. So the DocTypes are read once
before each of those runs (one query on ``tabDocType``) and again after it: each one gone is
recorded as ``system.change`` ``deleted`` with ``payload.via`` naming the run ("migrate",
"install", "uninstall"), unless an event of that run already told of it (the ``deleted`` of
its feed entry, or a ``renamed`` from its name).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from typing import Any

import frappe
from frappe.utils import get_datetime, now_datetime

from cauldron_fabric.core.naming import SYSTEM_CHANGE
from cauldron_fabric.emit.document_events import emit_document_event
from cauldron_fabric.emit.documents import deleted_doctype
from cauldron_fabric.emit.policy import APP, current_policy, has_outbox

# What the snapshot keeps of each DocType: enough to tell which one it was and what it was.
COLUMNS = (
	"name",
	"module",
	"custom",
	"istable",
	"issingle",
	"is_submittable",
	"is_tree",
	"is_virtual",
	"owner",
	"creation",
	"modified",
	"modified_by",
)


@dataclass(frozen=True)
class Snapshot:
	"""The DocTypes of a site before a run, when it was taken, and the newest event then."""

	doctypes: dict[str, dict[str, Any]]
	taken_at: dt.datetime
	last_event: int


# One snapshot per site, run and app, between the two hooks of one process (an app installed
# as another's requirement runs its own pair inside the other's).
_SNAPSHOTS: dict[tuple[str, str, str | None], Snapshot] = {}


# A migrate's snapshot is also kept in the site's folder until its after_migrate has recorded:
# Frappe commits each patch, so a migrate that fails after a patch deleted a DocType keeps that
# deletion, and the next migrate compares against the snapshot taken before it.
MIGRATE_SNAPSHOT_FILE = "fabric_migrate_snapshot.json"


# Frappe's hooks around each run (see hooks.py).
def before_migrate() -> None:
	kept = _kept_migrate_snapshot()
	if kept is not None:  # the last migrate failed before its after_migrate
		_SNAPSHOTS[_key("migrate", None)] = kept
	elif (snapshot := take_snapshot("migrate")) is not None:
		_keep_migrate_snapshot(snapshot)


def after_migrate() -> None:
	record_deleted_doctypes("migrate")
	path = frappe.get_site_path(MIGRATE_SNAPSHOT_FILE)
	if os.path.exists(path):
		os.remove(path)


def before_app_install(app_name: str) -> None:
	take_snapshot("install", app_name)


def after_app_install(app_name: str) -> None:
	record_deleted_doctypes("install", app_name)


def before_app_uninstall(app_name: str) -> None:
	if app_name != APP:  # its Event Log goes with it
		take_snapshot("uninstall", app_name)


def after_app_uninstall(app_name: str) -> None:
	# Frappe committed the uninstall and commits nothing after this hook: the events commit here.
	if record_deleted_doctypes("uninstall", app_name):
		frappe.db.commit()


def take_snapshot(run: str, app: str | None = None) -> Snapshot | None:
	"""Reads the site's DocTypes before ``run`` (one query), for ``record_deleted_doctypes``;
	returns the snapshot (None before the app's Event Log exists)."""
	if not has_outbox():
		return None
	rows = frappe.db.sql(f"SELECT {', '.join(COLUMNS)} FROM `tabDocType`", as_dict=True)
	last_event = frappe.db.sql("SELECT COALESCE(MAX(name), 0) FROM `tabEvent Log`")[0][0]
	snapshot = Snapshot({row.name: row for row in rows}, now_datetime(), int(last_event))
	_SNAPSHOTS[_key(run, app)] = snapshot
	return snapshot


def _keep_migrate_snapshot(snapshot: Snapshot) -> None:
	kept = {"doctypes": snapshot.doctypes, "taken_at": snapshot.taken_at, "last_event": snapshot.last_event}
	with open(frappe.get_site_path(MIGRATE_SNAPSHOT_FILE), "w") as file:
		file.write(frappe.as_json(kept, indent=None))


def _kept_migrate_snapshot() -> Snapshot | None:
	"""Returns the snapshot a failed migrate kept (None when there is none, or it cannot be read)."""
	path = frappe.get_site_path(MIGRATE_SNAPSHOT_FILE)
	try:
		with open(path) as file:
			kept = json.load(file)
		doctypes = {name: frappe._dict(row) for name, row in kept["doctypes"].items()}
		return Snapshot(doctypes, get_datetime(kept["taken_at"]), int(kept["last_event"]))
	except FileNotFoundError:
		return None
	except (ValueError, KeyError, TypeError):
		frappe.logger("cauldron_fabric").warning("unreadable %s ignored: a new snapshot is taken", path)
		return None


def record_deleted_doctypes(run: str, app: str | None = None) -> list[str]:
	"""Records ``system.change`` ``deleted`` for each DocType gone since ``run``'s snapshot that no
	event of the run told of; returns their names. One renamed in the run, then deleted, is
	recorded under the name its ``renamed`` event gave it.

	``payload.doc`` is the DocType as the deletion kept it in Deleted Document (as for a Desk
	deletion), or, when it kept none, the row the snapshot read.
	"""
	snapshot = _SNAPSHOTS.pop(_key(run, app), None)
	if snapshot is None or not current_policy().kind_of("DocType"):
		return []
	present = set(frappe.db.sql("SELECT name FROM `tabDocType`", pluck=True))
	gone = set(snapshot.doctypes) - present
	if not gone:
		return []
	deleted, renamed_to = _told(snapshot.last_event)
	recorded = []
	for name in sorted(gone):
		last_name, seen = name, {name}
		while renamed_to.get(last_name) not in (None, *seen):  # renamed in the run, maybe again
			last_name = renamed_to[last_name]
			seen.add(last_name)
		if last_name in present or last_name in deleted:
			continue  # it lives on under its new name, or an event of the run told of its deletion
		row = {**snapshot.doctypes[name], "name": last_name}
		doc = deleted_doctype(last_name, since=snapshot.taken_at, row=row)
		emit_document_event(doc, "deleted", via=run)
		recorded.append(last_name)
	return recorded


def _told(after: int) -> tuple[set[str], dict[str, str]]:
	"""Returns what the events after ``after`` told of DocTypes: those deleted, and each old name
	renamed with the name it took (a rename's event is recorded under the new name)."""
	rows = frappe.db.sql(
		"""SELECT action, entity_id, envelope FROM `tabEvent Log`
		WHERE name > %(after)s AND entity = 'DocType' AND event_type = %(type)s
			AND action IN ('deleted', 'renamed')
		ORDER BY name""",
		{"after": after, "type": SYSTEM_CHANGE},
		as_dict=True,
	)
	deleted, renamed_to = set(), {}
	for row in rows:
		if row.action == "deleted":
			deleted.add(row.entity_id)
		else:
			renamed_to[json.loads(row.envelope)["data"]["payload"].get("oldName")] = row.entity_id
	return deleted, renamed_to


def _key(run: str, app: str | None) -> tuple[str, str, str | None]:
	return (frappe.local.site, run, app)
