"""Schema versions: registering one (checked, numbered, immutable), the dry run, reading them back.

A subject's versions are numbered 1, 2, 3... in the order they are registered; a number is
never reused, even after a version is deleted, so a ``dataSchema`` reference in the Event Log
always means the schema it was checked against. Registering locks the subject's row, so two
registrations of one subject queue up and each is checked against the other's result.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

import frappe
from frappe import _

from cauldron_fabric.core.schema import (
	CompatibilityMode,
	CompatibilityResult,
	CompiledSchema,
	check_compatibility,
	data_schema_uri,
	schema_fingerprint,
	with_registry_id,
)
from cauldron_fabric.registry import subjects
from cauldron_fabric.registry.cache import schemas_changed
from cauldron_fabric.registry.errors import (
	IncompatibleSchemaError,
	InvalidSchemaError,
	OperationNotPermitted,
	VersionNotFound,
)
from cauldron_fabric.registry.parsing import (
	invalid_schemas,
	parse_examples,
	parse_schema,
	parse_version,
	pretty,
)
from cauldron_fabric.services.guards import changed_fields

SCHEMA = "Event Schema"
IMMUTABLE_FIELDS = ("subject", "version", "fingerprint", "data_schema")
# What registration recorded about the version: read-only, never edited after it.
REGISTRATION_FIELDS = ("title", "compatibility_mode", "compatibility_report")
# Site default holding {subject: last version} of deleted subjects (see deleted_subject_versions).
RETIRED_KEY = "fabric_deleted_subject_versions"


def versions_of(subject: str, lock: bool = False) -> list[dict[str, Any]]:
	"""Returns the subject's versions oldest first (version, name, schema parsed, fingerprint)."""
	rows = frappe.db.sql(
		"SELECT name, version, json_schema, fingerprint FROM `tabEvent Schema` WHERE subject = %s "
		"ORDER BY version" + (" FOR UPDATE" if lock else ""),
		(subject,),
		as_dict=True,
	)
	return [{**row, "schema": json.loads(row.json_schema)} for row in rows]


def version_doc(subject: str, version: Any = None):
	"""Returns one version's document (the latest when ``version`` is None or "latest")."""
	subjects.require_subject(subject, with_versions=True)
	number = parse_version(version)
	filters: dict[str, Any] = {"subject": subject}
	if number is not None:
		filters["version"] = number
	name = frappe.db.get_value(SCHEMA, filters, "name", order_by="version desc")
	if not name:
		raise VersionNotFound(_("Version {0} of {1} not found.").format(version or "latest", subject))
	return frappe.get_doc(SCHEMA, name)


def dry_run(subject: str, schema: Any, version: Any = None) -> CompatibilityResult:
	"""Checks a schema against the subject's versions under its mode, registering nothing.

	With ``version`` (a number or "latest") the schema is checked against that version alone;
	without, against what the mode asks (the latest, or every version when transitive). A
	subject with no versions accepts anything.
	"""
	schema = parse_schema(schema)
	exists = frappe.db.exists(subjects.SUBJECT, subject)
	mode = subjects.subject_mode(subject) if exists else subjects.default_mode()
	if version is not None:
		doc = version_doc(subject, version)
		earlier = [{"schema": json.loads(doc.json_schema), "version": doc.version}]
	else:
		earlier = versions_of(subject) if exists else []
	return compatibility_with(schema, earlier, mode)


def compatibility_with(
	schema: Any, earlier: Sequence[dict[str, Any]], mode: CompatibilityMode
) -> CompatibilityResult:
	"""Checks a schema against earlier versions; one that cannot be used (such as a version
	registered before the depth limit, nested deeper) is InvalidSchemaError (42201), not a 500."""
	with invalid_schemas():
		return check_compatibility(
			schema, [v["schema"] for v in earlier], mode, versions=[v["version"] for v in earlier]
		)


def register_schema(
	subject: str,
	schema: Any,
	*,
	origin: str = subjects.REGISTERED,
	owner_team: str | None = None,
	owner_user: str | None = None,
	description: str | None = None,
	examples: Sequence[Any] | None = None,
):
	"""Registers a schema as the subject's next version and returns ``(document, created)``.

	A schema already registered under the subject returns that version (``created`` False),
	as Confluent's registry does. Owner and description default to the latest version's.
	"""
	subject = subjects.check_subject_name(subject)
	schema = parse_schema(schema)
	subjects.lock_subject(subject)
	subjects.ensure_subject(subject, origin)
	fingerprint = schema_fingerprint(schema)
	existing = frappe.db.get_value(SCHEMA, {"subject": subject, "fingerprint": fingerprint}, "name")
	if existing:
		return frappe.get_doc(SCHEMA, existing), False
	latest = (
		frappe.db.get_value(
			SCHEMA,
			{"subject": subject},
			["owner_team", "owner_user", "description"],
			as_dict=True,
			order_by="version desc",
		)
		or frappe._dict()
	)
	doc = frappe.get_doc(
		{
			"doctype": SCHEMA,
			"subject": subject,
			"json_schema": pretty(schema),
			"owner_team": owner_team or latest.owner_team,
			"owner_user": owner_user or latest.owner_user,
			"description": description or latest.description,
			"examples": pretty(list(examples)) if examples else None,
		}
	)
	try:
		# prepare_version checks the subject with a locking read; the link check's plain read may
		# not see a subject a concurrent request has just created (REPEATABLE READ snapshot).
		doc.insert(ignore_permissions=True, ignore_links=True)
	except OperationNotPermitted:
		if not doc.flags.already_registered:
			raise
		# A concurrent request registered the same schema first: answer with its version, as
		# a sequential retry would (a locking read: this transaction's snapshot predates it).
		return frappe.get_doc(SCHEMA, doc.flags.already_registered, for_update=True), False
	return doc, True


def register_derived(subject: str, schema: Any, *, reference_doctype: str, owner_team: str, description: str):
	"""Registers a schema derived from a DocType as the subject's next version and returns it.

	Unlike ``register_schema`` it registers a breaking change too (its reasons kept on the
	version) and may repeat an older version's schema: the subject must follow its DocType.
	"""
	subjects.ensure_subject(subject, subjects.DOCTYPE, reference_doctype)
	doc = frappe.get_doc(
		{
			"doctype": SCHEMA,
			"subject": subject,
			"json_schema": pretty(schema),
			"owner_team": owner_team,
			"description": description,
		}
	)
	doc.flags.follows_doctype = True
	doc.insert(ignore_permissions=True)
	return doc


def prepare_version(doc) -> None:
	"""Checks a new version and numbers it; raises listing every reason it cannot be registered."""
	schema = parse_schema(doc.json_schema, trusted=bool(doc.flags.follows_doctype))
	doc.json_schema = pretty(schema)
	check_examples(doc, schema)
	state = frappe.db.get_value(
		subjects.SUBJECT,
		doc.subject,
		["last_assigned_version", "compatibility"],
		as_dict=True,
		for_update=True,
	)
	if state is None:
		subjects.require_subject(doc.subject)
	# A subject that never had a version has none to compare with (and no rows to lock, whose
	# gap lock would hold up registrations of other subjects until this transaction ends).
	earlier = versions_of(doc.subject, lock=True) if state.last_assigned_version else []
	fingerprint = schema_fingerprint(schema)
	same = next((v["version"] for v in earlier if v["fingerprint"] == fingerprint), None)
	if same is not None and not doc.flags.follows_doctype:
		doc.flags.already_registered = next(v["name"] for v in earlier if v["version"] == same)
		raise OperationNotPermitted(
			_(
				"This schema is already registered as version {0} of {1}; there is nothing to register."
			).format(same, doc.subject)
		)
	mode = subjects.check_mode(state.compatibility) if state.compatibility else subjects.default_mode()
	if earlier:
		result = compatibility_with(schema, earlier, mode)
	else:
		result = CompatibilityResult(compatible=True, mode=mode)
	if not result.compatible and not doc.flags.follows_doctype:
		refuse_incompatible(doc.subject, result)
	retired = deleted_subject_versions().get(doc.subject, 0)
	doc.version = max(int(state.last_assigned_version or 0), retired, *(v["version"] for v in earlier)) + 1
	doc.title = f"{doc.subject} v{doc.version}"
	doc.data_schema = data_schema_uri(doc.subject, doc.version)
	doc.json_schema = pretty(with_registry_id(schema, doc.data_schema))
	doc.fingerprint = fingerprint
	doc.compatibility_mode = mode.value
	doc.compatibility_report = pretty(result.to_dict())


def check_examples(doc, schema: Any) -> None:
	"""Raises InvalidSchemaError listing each example that fails the schema, with paths and rules."""
	examples = parse_examples(doc.examples)
	doc.examples = pretty(examples) if examples else None
	if not examples:
		return
	compiled = CompiledSchema(schema)
	problems = [
		f"example {number}: {violation}"
		for number, example in enumerate(examples, 1)
		for violation in compiled.violations(example)
	]
	if problems:
		raise InvalidSchemaError(
			_("The examples do not match the schema: {0}. Fix the examples or the schema.").format(
				"; ".join(problems)
			)
		)


def refuse_incompatible(subject: str, result: CompatibilityResult) -> None:
	"""Shows every reason in Desk and raises IncompatibleSchemaError (409) carrying them all."""
	lines = [_reason_text(reason) for reason in result.reasons]
	frappe.msgprint(
		"<p>{}</p><ul>{}</ul><p>{}</p>".format(
			html.escape(_("The new schema of {0} is not {1} compatible:").format(subject, result.mode.value)),
			"".join(f"<li>{html.escape(line)}</li>" for line in lines),
			html.escape(
				_(
					"Make the change compatible (for example add optional fields only), or change the "
					"subject's compatibility mode if every consumer is upgraded at once."
				)
			),
		),
		title=_("Schema change refused"),
		indicator="red",
	)
	error = IncompatibleSchemaError(
		_(
			'Schema being registered is incompatible with an earlier schema for subject "{0}" under {1}: {2}'
		).format(subject, result.mode.value, "; ".join(lines)),
		details={"reasons": result.to_dict()["reasons"], "compatibility": result.mode.value},
	)
	error.shown = True  # the message above lists the reasons
	raise error


def _reason_text(reason) -> str:
	where = f"version {reason.version}, {reason.direction}" if reason.version else reason.direction
	return f"{reason.path}: {reason.message} [{reason.rule}] ({where})"


def refuse_published_changes(doc) -> None:
	"""Raises OperationNotPermitted when a saved version's subject, number or schema is changed."""
	before = doc.get_doc_before_save()
	if before is None:
		return
	changed = changed_fields(doc, (*IMMUTABLE_FIELDS, *REGISTRATION_FIELDS))
	if json.loads(doc.json_schema or "null") != json.loads(before.json_schema or "null"):
		changed.append("schema")
	if changed:
		raise OperationNotPermitted(
			_(
				"Version {0} of {1} is published and cannot change ({2}). Register a new version instead."
			).format(before.version, before.subject, ", ".join(changed))
		)
	doc.json_schema = before.json_schema
	check_examples(doc, json.loads(doc.json_schema))


def version_registered(doc) -> None:
	"""Records the new version on its subject and tells every process the registry changed."""
	frappe.db.set_value(
		subjects.SUBJECT,
		doc.subject,
		{"latest_version": doc.version, "last_assigned_version": doc.version},
		update_modified=False,
	)
	schemas_changed()


def version_deleted(doc) -> None:
	"""Points the subject at its latest remaining version; numbers are not reused."""
	remaining = frappe.db.sql(
		"SELECT MAX(version) FROM `tabEvent Schema` WHERE subject = %s AND name != %s",
		(doc.subject, doc.name),
	)[0][0]
	if frappe.db.exists(subjects.SUBJECT, doc.subject):
		frappe.db.set_value(
			subjects.SUBJECT, doc.subject, "latest_version", int(remaining or 0), update_modified=False
		)
	schemas_changed()


def version_dict(doc) -> dict[str, Any]:
	"""Returns a version in Confluent's shape (schema as a string) plus the fabric's own fields."""
	return {
		"subject": doc.subject,
		"version": doc.version,
		"id": int(doc.name),
		"schemaType": "JSON",
		"schema": json.dumps(json.loads(doc.json_schema), separators=(",", ":")),
		"dataSchema": doc.data_schema,
		"status": doc.status,
		"replacedBy": _replacement(doc.replaced_by),
		"owner": {"team": doc.owner_team, "user": doc.owner_user},
		"description": doc.description,
		"examples": json.loads(doc.examples) if doc.examples else [],
	}


def _replacement(name: str | None) -> dict[str, Any] | None:
	if not name:
		return None
	row = frappe.db.get_value(SCHEMA, name, ["subject", "version"], as_dict=True)
	return {"subject": row.subject, "version": row.version} if row else None


def delete_subject_versions(subject: str) -> None:
	"""Deletes every version of a subject; refuses while another event type names one as replacement."""
	names = frappe.get_all(SCHEMA, filters={"subject": subject}, pluck="name")
	if not names:
		return
	referrers = frappe.get_all(
		SCHEMA,
		filters={"replaced_by": ("in", names), "subject": ("!=", subject)},
		fields=["title"],
	)
	if referrers:
		raise OperationNotPermitted(
			_("{0} name a version of {1} as their replacement; change them first.").format(
				", ".join(row.title for row in referrers), subject
			)
		)
	last = frappe.db.sql(f"SELECT MAX(version) FROM `tab{SCHEMA}` WHERE subject = %s", (subject,))[0][0]
	retired = deleted_subject_versions()
	retired[subject] = max(int(last or 0), retired.get(subject, 0))
	frappe.db.set_default(RETIRED_KEY, json.dumps(retired, sort_keys=True))
	frappe.db.delete(SCHEMA, {"subject": subject})
	schemas_changed()


def deleted_subject_versions() -> dict[str, int]:
	"""Returns the last version number of each deleted subject (a subject created again goes on from it).

	Events in the Event Log name versions by number: were a re-created subject to start at 1
	again, an old event's dataSchema would point at a different schema.
	"""
	return json.loads(frappe.db.get_default(RETIRED_KEY) or "{}")
