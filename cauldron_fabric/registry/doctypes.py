"""Schemas of document events, derived from each DocType's fields and kept in step with them.

Derived lazily: a DocType's lifecycle subjects (``<doctype>.created`` ... ``.renamed``, and
``.submitted``, ``.cancelled``, ``.updated_after_submit`` when it is submittable)
are registered the first time one of its events is recorded, in that event's transaction.
Deriving every DocType at install would register thousands of versions on an ERPNext site
(most DocTypes never emit) and redo the work on each migrate; lazily, the registry holds the
events the site actually produces, and the cost is paid once per DocType.

A change to a DocType, a Custom Field or a Property Setter marks the DocType; before the
transaction commits, each marked DocType that has derived subjects (and every DocType that
embeds it as a child table) gets a new version when its derived schema differs from the latest.
So a transaction adds at most one version per subject however many properties it set (Frappe
commits on its own after each column a Custom Field adds, so each such field is one). A derived schema
follows its DocType even when the change breaks consumers (the fields are on the events
either way); the reasons are kept on the version and shown to whoever changed the DocType.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import frappe
from frappe import _

from cauldron_fabric.core.naming import document_event_type
from cauldron_fabric.core.schema import document_event_schemas, schema_fingerprint
from cauldron_fabric.core.schema.doctype_schema import TABLE_TYPES
from cauldron_fabric.emit.held import hold_until_commit, release
from cauldron_fabric.registry import subjects, versions
from cauldron_fabric.registry.cache import forget_local

FIELD_KEYS = ("fieldname", "fieldtype", "label", "reqd", "options", "length", "non_negative", "is_virtual")


SUBMIT_ACTIONS = ("submitted", "cancelled", "updated_after_submit")

# The DocTypes changed in the open transaction, their derived schemas refreshed before it commits.
CHANGED_DOCTYPES = "fabric_changed_doctypes"


def derived_schemas(doctype: str, cached: bool = True) -> dict[str, dict[str, Any]]:
	"""Returns ``{event type: payload schema}`` for the DocType's lifecycle events, from its meta.

	A DocType that cannot be submitted gets no schemas for submitting and cancelling.
	``cached=False`` reads the meta afresh: right after a Custom Field is deleted, the cached meta
	can still hold it (Frappe reloads the meta between clearing it and deleting the row).
	"""
	meta = frappe.get_meta(doctype, cached=cached)
	children: dict[str, list[dict[str, Any]]] = {}
	_collect_children(meta, children, cached)
	schemas = document_event_schemas(doctype, _fields(meta), children)
	if not meta.is_submittable:
		for action in SUBMIT_ACTIONS:
			schemas.pop(document_event_type(doctype, action))
	return schemas


def _fields(meta) -> list[dict[str, Any]]:
	return [{key: df.get(key) for key in FIELD_KEYS} for df in meta.fields]


def _collect_children(meta, children: dict[str, list[dict[str, Any]]], cached: bool) -> None:
	for df in meta.fields:
		if df.fieldtype in TABLE_TYPES and df.options and df.options not in children:
			child = frappe.get_meta(df.options, cached=cached)
			children[df.options] = _fields(child)
			_collect_children(child, children, cached)


def is_document_event(event_type: str, entity: str, action: str) -> bool:
	"""Tells whether an event is a lifecycle event of a DocType named by its entity."""
	try:
		return document_event_type(entity, action) == event_type
	except ValueError:
		return False


def ensure_doctype_schemas(doctype: str) -> bool:
	"""Registers the derived schemas of a DocType whose lifecycle subjects have none yet.

	Runs inside the transaction of the event that needed them, under a savepoint: when
	another process registers them at the same moment, this one gives way and the event
	is recorded without a schema this once. Returns whether anything was registered.
	"""
	if not frappe.db.table_exists(subjects.SUBJECT) or not frappe.db.exists("DocType", doctype):
		return False  # the app's own tables are still being created (install)
	savepoint = "fabric_derive_schemas"
	frappe.db.savepoint(savepoint)
	try:
		added, _breaking = _register(doctype, only_missing=True)
	except (frappe.DuplicateEntryError, frappe.UniqueValidationError, frappe.QueryTimeoutError):
		frappe.db.rollback(save_point=savepoint)
		forget_local()
		return False
	frappe.db.release_savepoint(savepoint)
	return added > 0


def refresh_doctype_schemas(doctype: str) -> list[str]:
	"""Registers a new version of each derived subject of ``doctype`` whose schema changed.

	Returns a line per subject whose new version breaks consumers under its mode.
	"""
	if not frappe.db.exists("DocType", doctype):
		return []
	return _register(doctype, only_missing=False)[1]


def _register(doctype: str, only_missing: bool) -> tuple[int, list[str]]:
	"""Registers what changed; returns how many versions were added and why any of them breaks."""
	meta = frappe.get_meta(doctype)
	added = 0
	breaking = []
	for event_type, schema in derived_schemas(doctype, cached=only_missing).items():
		latest = frappe.db.get_value(
			versions.SCHEMA,
			{"subject": event_type},
			["fingerprint", "version"],
			as_dict=True,
			order_by="version desc",
		)
		if latest and (only_missing or latest.fingerprint == schema_fingerprint(schema)):
			continue
		doc = versions.register_derived(
			event_type,
			schema,
			reference_doctype=doctype,
			owner_team=meta.module,
			description=schema.get("description"),
		)
		added += 1
		if not frappe.parse_json(doc.compatibility_report).get("compatible", True):
			breaking.append(_breaking_line(doc))
	return added, breaking


def _breaking_line(doc) -> str:
	report: Mapping[str, Any] = frappe.parse_json(doc.compatibility_report)
	reasons = "; ".join(f"{r['path']}: {r['message']}" for r in report.get("reasons", []))
	return _("{0} version {1} breaks {2} consumers: {3}").format(
		doc.subject, doc.version, report.get("mode"), reasons
	)


def schema_source_changed(doc, method: str | None = None) -> None:
	"""Marks the DocType behind a changed DocType, Custom Field or Property Setter for a refresh."""
	doctype = {"DocType": "name", "Custom Field": "dt", "Property Setter": "doc_type"}.get(doc.doctype)
	target = doctype and doc.get(doctype)
	if not target or frappe.flags.in_install == "cauldron_fabric":
		return
	# Held with its before_commit callback, not beside it: a rollback of a commit that another
	# callback refused must not leave the next changes waiting for a refresh already gone.
	hold_until_commit(CHANGED_DOCTYPES, refresh_changed_doctypes)[target] = None


def refresh_changed_doctypes() -> None:
	"""Refreshes the derived schemas of the DocTypes changed in this transaction, before it commits."""
	changed = set(release(CHANGED_DOCTYPES))
	if not changed or not frappe.db.table_exists(subjects.SUBJECT):
		return
	for doctype in sorted(_with_parents(changed)):
		savepoint = "fabric_refresh_schemas"
		frappe.db.savepoint(savepoint)
		try:
			breaking = refresh_doctype_schemas(doctype)
		except Exception:
			# The DocType change itself must go through; the refresh is retried on the next change.
			frappe.db.rollback(save_point=savepoint)
			frappe.log_error(title=_("Could not refresh the event schemas of {0}").format(doctype))
			continue
		frappe.db.release_savepoint(savepoint)
		if breaking:
			frappe.msgprint(
				"<br>".join(frappe.utils.escape_html(line) for line in breaking),
				title=_("Event schemas changed in a way that breaks consumers"),
				indicator="orange",
			)


def _with_parents(doctypes: set[str]) -> set[str]:
	"""Returns the DocTypes with derived subjects among ``doctypes`` and those embedding them."""
	candidates = set(doctypes)
	frontier = set(doctypes)
	while frontier:
		parents = set(
			frappe.get_all(
				"DocField",
				filters={"options": ("in", list(frontier)), "fieldtype": ("in", list(TABLE_TYPES))},
				pluck="parent",
			)
		) | set(
			frappe.get_all(
				"Custom Field",
				filters={"options": ("in", list(frontier)), "fieldtype": ("in", list(TABLE_TYPES))},
				pluck="dt",
			)
		)
		frontier = parents - candidates
		candidates |= parents
	return set(
		frappe.get_all(
			subjects.SUBJECT,
			filters={"origin": subjects.DOCTYPE, "reference_doctype": ("in", list(candidates))},
			pluck="reference_doctype",
			distinct=True,
		)
	)


def refresh_all_derived() -> int:
	"""Refreshes every DocType that has derived subjects (after migrate); returns versions added."""
	doctypes = frappe.get_all(
		subjects.SUBJECT,
		filters={"origin": subjects.DOCTYPE},
		pluck="reference_doctype",
		distinct=True,
	)
	before = frappe.db.count(versions.SCHEMA)
	for doctype in doctypes:
		if doctype:
			refresh_doctype_schemas(doctype)
	return frappe.db.count(versions.SCHEMA) - before
