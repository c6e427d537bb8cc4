"""Helpers of the registry tests: a probe DocType of their own, unique subjects, registry cleanup."""

from __future__ import annotations

import json
from typing import Any

import frappe

from cauldron_fabric.registry import versions
from cauldron_fabric.registry.cache import forget_local
from cauldron_fabric.tests.utils import ITEM_FIELDS, ensure_custom_doctype

PROBE = "Fabric Registry Probe"
PROBE_LINE = "Fabric Registry Probe Line"
PROBE_TYPE = "fabric_registry_probe"
SCHEMA = "Event Schema"
SUBJECT = "Event Subject"

# Version 1 of a test subject: an order with an optional note, closed to unknown keys.
ORDER_V1 = {
	"type": "object",
	"required": ["orderId", "qty"],
	"properties": {
		"orderId": {"type": "string"},
		"qty": {"type": "integer", "minimum": 1},
		"note": {"type": ["string", "null"]},
	},
	"additionalProperties": False,
}


# A dynamic link, like ToDo's: deleting any document makes Frappe load the metas of DocTypes
# with dynamic links, which is how a stale meta can outlive a deleted Custom Field.
REFERENCE_FIELDS = (
	{"fieldname": "reference_type", "fieldtype": "Link", "label": "Reference Type", "options": "DocType"},
	{
		"fieldname": "reference_name",
		"fieldtype": "Dynamic Link",
		"label": "Reference Name",
		"options": "reference_type",
	},
)


def unique_subject(prefix: str = "fabric_test") -> str:
	"""Returns an event type no other test uses, e.g. ``fabric_test.k3j9x2.placed``."""
	return f"{prefix}.{frappe.generate_hash(length=8).lower()}.placed"


def with_property(schema: dict[str, Any], name: str, definition: dict[str, Any], required: bool = False):
	"""Returns a copy of ``schema`` with one more property (required or not)."""
	changed = json.loads(json.dumps(schema))
	changed["properties"][name] = definition
	if required:
		changed["required"] = [*changed["required"], name]
	return changed


def without_property(schema: dict[str, Any], name: str) -> dict[str, Any]:
	"""Returns a copy of ``schema`` without one property."""
	changed = json.loads(json.dumps(schema))
	changed["properties"].pop(name)
	changed["required"] = [n for n in changed["required"] if n != name]
	return changed


def drop_subjects(*subjects: str, like: str | None = None) -> None:
	"""Deletes test subjects and their versions (committed) and forgets the cached registry."""
	names = list(subjects)
	if like:
		names += frappe.get_all(SUBJECT, filters={"name": ("like", like)}, pluck="name")
	for name in names:
		if frappe.db.exists(SUBJECT, name):
			frappe.delete_doc(SUBJECT, name, ignore_permissions=True, force=True)
	# As if they never existed: the next test registering them starts at version 1 again.
	retired = versions.deleted_subject_versions()
	for name in names:
		retired.pop(name, None)
	frappe.db.set_default(versions.RETIRED_KEY, json.dumps(retired, sort_keys=True))
	frappe.db.commit()
	forget_local()


def refuse_the_next_commit() -> None:
	"""Makes the next commit fail in a before_commit callback, run before those added after it.

	Frappe drops the after-rollback callbacks before it runs the before-commit ones, so the
	rollback that follows a refused commit is not told to anyone.
	"""

	def refuse() -> None:
		raise frappe.ValidationError("refused by a before_commit callback")

	frappe.db.before_commit.add(refuse)


def ensure_probe_doctype() -> None:
	"""Creates the probe DocType (with a child table) that only the registry tests save."""
	ensure_custom_doctype(PROBE_LINE, ITEM_FIELDS, istable=1)
	probe_fields = [
		{"fieldname": "title", "fieldtype": "Data", "label": "Title", "reqd": 1},
		{"fieldname": "amount", "fieldtype": "Currency", "label": "Amount"},
		{"fieldname": "stage", "fieldtype": "Select", "label": "Stage", "options": "\nOpen\nDone"},
		{"fieldname": "lines", "fieldtype": "Table", "label": "Lines", "options": PROBE_LINE},
		*REFERENCE_FIELDS,
	]
	ensure_custom_doctype(PROBE, probe_fields, autoname="hash")
	probe = frappe.get_doc("DocType", PROBE)
	if not probe.get("fields", {"fieldname": "reference_name"}):
		for field in REFERENCE_FIELDS:
			probe.append("fields", field)
		probe.save(ignore_permissions=True)
	frappe.db.commit()


def new_probe(title: str = "probe", **values: Any):
	"""Inserts a probe document with one line."""
	return frappe.get_doc(
		{"doctype": PROBE, "title": title, "amount": 10, "lines": [{"item": "a", "qty": 1}], **values}
	).insert()


def latest(subject: str):
	"""Returns the latest version document of a subject (None when it has none)."""
	name = frappe.db.get_value(SCHEMA, {"subject": subject}, "name", order_by="version desc")
	return frappe.get_doc(SCHEMA, name) if name else None


def queries_issued() -> int:
	"""Returns how many statements this database session has sent (MariaDB's own counter)."""
	return int(frappe.db.sql("SHOW SESSION STATUS LIKE 'Questions'")[0][1])
