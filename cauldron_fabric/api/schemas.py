"""The schema registry over the API, in the shape of Confluent Schema Registry's REST API.

Each method is ``/api/method/cauldron_fabric.api.schemas.<name>``; Confluent's path parameters
are query (GET) or body (POST, PUT) parameters:

========================================  =============================================
Confluent                                 here
========================================  =============================================
GET  /subjects                            GET  list_subjects
GET  /subjects/{s}/versions               GET  list_versions?subject=
GET  /subjects/{s}/versions/{v}           GET  get_version?subject=&version=
GET  /schemas/ids/{id}                    GET  get_schema?id=
POST /subjects/{s}/versions               POST register {subject, schema, schemaType}
POST /compatibility/subjects/{s}/versions POST check_compatibility {subject, schema[, version]}
GET  /config[/{s}]                        GET  get_config[?subject=]
PUT  /config/{s}                          PUT  set_config {subject, compatibility}
========================================  =============================================

Errors carry Confluent's body, ``{"error_code": 40401, "message": "..."}``, with its HTTP
status: 404 (40401 subject, also one whose versions were all deleted; 40402 version; 40403
schema not found), 409 (incompatible), 422 (42201 invalid schema: also one sent with
``references``, which are not supported, one nested deeper than
``core.schema.depth.MAX_SCHEMA_DEPTH`` (64) levels, and owner or description fields that are no
texts or too long for their columns; 42202 invalid version, 42203 invalid compatibility level,
42208 invalid subject), 403 without permission. Reading needs read permission on Event Schema;
writing needs the System Manager or Fabric Manager role.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from typing import Any

import frappe
from frappe import _
from werkzeug.wrappers import Response

from cauldron_fabric.api.params import text_param
from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.registry import subjects, versions
from cauldron_fabric.registry.documentation import site_asyncapi_document
from cauldron_fabric.registry.errors import (
	InvalidSchemaError,
	RegistryError,
	SchemaNotFound,
	shown_in_desk,
)
from cauldron_fabric.registry.parsing import parse_examples, shown, text_field

SCHEMA = "Event Schema"
JSON_SCHEMA_TYPE = "JSON"
# A schema id: ASCII digits, no more than a BIGINT holds (int() refuses thousands of digits).
SCHEMA_ID = re.compile("[0-9]{1,18}")


@contextmanager
def confluent_errors():
	"""Puts a registry error's code and message into the response body, then lets it propagate."""
	try:
		with shown_in_desk():  # the Desk buttons (Check compatibility) show it
			yield
	except RegistryError as exc:
		frappe.local.response.update(exc.body())
		raise


def require_read() -> None:
	"""Raises PermissionError unless the user may read Event Schema, saying who may."""
	if not frappe.has_permission(SCHEMA, "read"):
		frappe.throw(
			_(
				"Reading event schemas needs read permission on {0} (Fabric Manager or System Manager)."
			).format(_(SCHEMA)),
			frappe.PermissionError,
			title=_("Not permitted"),
		)


@frappe.whitelist(methods=["GET"])
def list_subjects(subjectPrefix: str | None = None) -> list[str]:
	"""Returns the subjects with at least one version, sorted (optionally those with a prefix)."""
	require_read()
	return subjects.list_subjects(text_param(subjectPrefix, "subjectPrefix"))


@frappe.whitelist(methods=["GET"])
def list_versions(subject: str | None = None) -> list[int]:
	"""Returns a subject's version numbers, oldest first."""
	require_read()
	with confluent_errors():
		subject = subjects.check_subject_name(subject)
		subjects.require_subject(subject, with_versions=True)
		return [row["version"] for row in versions.versions_of(subject)]


@frappe.whitelist(methods=["GET"])
def get_version(subject: str | None = None, version: str | int = "latest") -> dict[str, Any]:
	"""Returns one version of a subject ("latest" by default) with its schema as a string."""
	require_read()
	with confluent_errors():
		subject = subjects.check_subject_name(subject)
		return versions.version_dict(versions.version_doc(subject, version))


@frappe.whitelist(methods=["GET"])
def get_schema(id: str | int | None = None) -> dict[str, Any]:
	"""Returns the schema registered under a global id (the id ``register`` returned)."""
	require_read()
	with confluent_errors():
		if not isinstance(id, str | int) or isinstance(id, bool):
			raise SchemaNotFound(_("Schema not found: the id must be a number, not {0}.").format(shown(id)))
		name = str(id).strip()
		# ASCII digits only: str.isdigit takes superscripts, which int() refuses, and int() takes
		# full-width digits, so "\uff11" would have read schema 1.
		if not SCHEMA_ID.fullmatch(name) or not frappe.db.exists(SCHEMA, int(name)):
			raise SchemaNotFound(_("Schema {0} not found.").format(shown(id)))
		doc = frappe.get_doc(SCHEMA, int(name))
		return {"schema": versions.version_dict(doc)["schema"], "schemaType": JSON_SCHEMA_TYPE}


@frappe.whitelist(methods=["POST"])
def register(
	subject: str | None = None,
	schema: str | dict | bool | None = None,
	schemaType: str = JSON_SCHEMA_TYPE,
	ownerTeam: str | None = None,
	ownerUser: str | None = None,
	description: str | None = None,
	examples: str | list | None = None,
	references: str | list | None = None,
) -> dict[str, int]:
	"""Registers a schema as the subject's next version; an already registered one returns its id.

	``ownerTeam``, ``ownerUser``, ``description`` and ``examples`` (payloads that must match)
	are the fabric's additions to Confluent's body; ``references`` are refused (42201).
	"""
	require_role()
	with confluent_errors():
		_require_json_type(schemaType)
		_require_schema(schema)
		_refuse_references(references)
		owner_team = text_field(ownerTeam, "ownerTeam", SCHEMA, "owner_team")
		owner_user = text_field(ownerUser, "ownerUser", SCHEMA, "owner_user")
		description = text_field(description, "description", SCHEMA, "description")
		if owner_user and not frappe.db.exists("User", owner_user):
			raise InvalidSchemaError(_("ownerUser {0} is not a user of this site.").format(shown(owner_user)))
		doc, _created = versions.register_schema(
			subject,
			schema,
			owner_team=owner_team,
			owner_user=owner_user,
			description=description,
			examples=parse_examples(examples),
		)
		return {"id": int(doc.name), "version": doc.version}


@frappe.whitelist(methods=["POST"])
def check_compatibility(
	subject: str | None = None,
	schema: str | dict | bool | None = None,
	version: str | int | None = None,
	schemaType: str = JSON_SCHEMA_TYPE,
	verbose: bool = True,
	references: str | list | None = None,
) -> dict[str, Any]:
	"""Dry run: tells whether the schema could be registered and lists every reason it could not.

	Without ``version`` the schema is checked as registering it would check it (under the
	subject's mode, against every version when transitive); with one, against that version.
	"""
	require_read()
	with confluent_errors():
		_require_json_type(schemaType)
		_require_schema(schema)
		_refuse_references(references)
		subject = subjects.check_subject_name(subject)
		result = versions.dry_run(subject, schema, version)
	body: dict[str, Any] = {"is_compatible": result.compatible}
	if _flag(verbose):
		body["messages"] = [f"{r.path}: {r.message} [{r.rule}]" for r in result.reasons]
		body.update(result.to_dict())
	return body


@frappe.whitelist(methods=["GET"])
def get_config(subject: str | None = None, defaultToGlobal: bool = True) -> dict[str, str]:
	"""Returns the compatibility level of a subject (or, without one, the site's default)."""
	require_read()
	with confluent_errors():
		if not subject:
			return {"compatibilityLevel": subjects.default_mode().value}
		own = subjects.own_mode(subjects.check_subject_name(subject))
		if own is None and not _flag(defaultToGlobal):
			return {"compatibilityLevel": None}
		return {"compatibilityLevel": own or subjects.default_mode().value}


@frappe.whitelist(methods=["PUT"])
def set_config(subject: str | None = None, compatibility: str | None = None) -> dict[str, str | None]:
	"""Sets a subject's compatibility mode; an empty one makes it follow the site's default."""
	require_role()
	with confluent_errors():
		return {"compatibility": subjects.set_subject_mode(subject, compatibility)}


@frappe.whitelist(methods=["GET"])
def asyncapi() -> Response:
	"""Serves the AsyncAPI 3.0 document of the site's events as the response body itself."""
	require_read()
	body = json.dumps(site_asyncapi_document(), indent=1, ensure_ascii=False)
	return Response(body, status=200, mimetype="application/json")


def _flag(value: Any) -> bool:
	"""Reads a boolean parameter as Confluent's clients send it in a query string: "true" or "false".

	Parameters arrive as text (the annotations are not applied to them), and ``cint("true")`` is 0.
	"""
	if isinstance(value, str):
		return value.strip().lower() in ("true", "1", "yes")
	return bool(value)


def _require_schema(schema: Any) -> None:
	if schema is None or schema == "":
		raise InvalidSchemaError(_("schema is required: send the JSON Schema (as JSON text or an object)."))


def _refuse_references(references: Any) -> None:
	"""Raises InvalidSchemaError (42201) for schema references; none (absent, ``[]``) is fine.

	A schema with references means the referenced schemas too: taking it without them would
	register, or check, a schema that means something else.
	"""
	if isinstance(references, str):
		try:
			references = json.loads(references or "null")
		except (ValueError, RecursionError):
			pass  # text that is not JSON (or too deep to read) is no empty list: refused below
	if references:
		raise InvalidSchemaError(
			_(
				"Schema references are not supported here. Put the referenced schemas into the schema "
				"itself (under $defs, referred to as #/$defs/...) and send it without references."
			)
		)


def _require_json_type(schema_type: Any) -> None:
	"""Raises InvalidSchemaError (42201) unless ``schemaType`` is JSON (or absent, which means JSON)."""
	if schema_type in (None, "") or (
		isinstance(schema_type, str) and schema_type.upper() == JSON_SCHEMA_TYPE
	):
		return
	raise InvalidSchemaError(
		_('schemaType must be "{0}", the only type registered here (also when left out), not {1}.').format(
			JSON_SCHEMA_TYPE, shown(schema_type)
		)
	)
