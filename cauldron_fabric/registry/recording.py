"""Schema checks on every path into the fabric: recorded events and consumed ones.

Which schema an event is checked against:

* the version its ``dataSchema`` names (``urn:cauldron:schema:<subject>:<version>``), when it
  names one: a producer states the version it wrote; a version that is not registered here is
  itself a violation (``$.dataSchema``);
* otherwise the latest version of the subject named by its type. A document event whose
  DocType has no schemas yet gets them derived from the DocType first (``registry.doctypes``).

An event type with no registered schema is accepted as it is, without ``dataSchema``: the
registry documents and enforces the contracts it knows, and an unregistered type (a new
integration, an ad-hoc event over the publish API) must not be lost for lack of one. A
checked event carries the ``dataSchema`` of the version it was checked against, valid or not.

Each lookup is a dict access in the process cache (``registry.cache``); only the first event
of a type in a process (or after a registration) reads the database.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import frappe
from frappe import _

from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.schema import Violation, parse_data_schema_uri
from cauldron_fabric.core.schema.validation import DATA_SCHEMA_PREFIX, PAYLOAD_PATH
from cauldron_fabric.registry.cache import Registered, latest_schema, schema_version, site_schemas
from cauldron_fabric.registry.doctypes import ensure_doctype_schemas, is_document_event
from cauldron_fabric.registry.errors import EventSchemaViolation

REJECT = "Reject"
RECORD_AS_INVALID = "Record as invalid"


def check_events(
	envelopes: Sequence[Envelope], reject_invalid: bool = True, *, refuse_invalid: bool = False
) -> list[tuple[Envelope, list[Violation]]]:
	"""Returns each envelope (with the schema it was checked against) and its violations.

	Raises EventSchemaViolation (a ValidationError naming every violation's JSON path and rule)
	when an event is invalid and Fabric Settings say to reject such events; during an install,
	uninstall, migrate or patch, or without ``reject_invalid``, the event is kept as Invalid instead, so
	an upgrade never fails on it. With ``refuse_invalid`` it is raised whatever the settings say:
	an event published from outside is no save to let through, and kept Invalid (never
	published) after its sender was told it was accepted, it would be lost.
	"""
	checked = [_check(envelope, derive=True) for envelope in envelopes]
	failures = [(envelope, violations) for envelope, violations in checked if violations]
	if failures and (refuse_invalid or _rejecting(reject_invalid)):
		reject(failures)
	return checked


def _rejecting(reject_invalid: bool) -> bool:
	return reject_invalid and invalid_event_policy() == REJECT and not _upgrading()


def check_consumed(envelope: Envelope | Mapping[str, Any]) -> tuple[Envelope, list[Violation]]:
	"""Checks an event consumed from the bus; returns it (with its ``dataSchema``) and its violations.

	A dict is parsed first, so a malformed envelope raises InvalidEnvelope. Nothing is raised for
	violations: the consumer decides (dead-letter the event rather than handle it). An event type
	with no registered schema comes back unchanged with no violations.
	"""
	if not isinstance(envelope, Envelope):
		envelope = Envelope.from_dict(envelope)
	return _check(envelope, derive=False)


def invalid_event_policy() -> str:
	"""Returns what Fabric Settings say to do with an invalid event: "Reject" or "Record as invalid"."""
	settings = frappe.get_cached_doc("Fabric Settings")
	return settings.get("invalid_event_policy") or REJECT


def _upgrading() -> bool:
	# An install, uninstall, migrate or patch is never failed by an event: its invalid events are
	# kept as Invalid (an uninstall's DocTypes are deleted and committed before they are recorded).
	flags = frappe.flags
	return bool(flags.in_install or flags.in_uninstall or flags.in_migrate or flags.in_patch)


def _check(envelope: Envelope, derive: bool) -> tuple[Envelope, list[Violation]]:
	declared = envelope.data_schema
	if declared and declared.startswith(DATA_SCHEMA_PREFIX):
		entry = _declared_version(declared)
		if entry is None:
			return envelope, [_unregistered(declared)]
		if entry.subject != envelope.type:
			# Another type's (laxer) schema must not stand in for the schema of this type.
			return envelope, [_other_subject(declared, envelope.type)]
	else:
		entry = _latest(envelope, derive)
		if entry is None:
			return envelope, []
	if declared != entry.data_schema:
		envelope = envelope.with_schema(entry.data_schema)
	payload = envelope.data.payload
	if not isinstance(payload, dict):
		payload = dict(payload)
	if entry.compiled.is_valid(payload):
		return envelope, []
	return envelope, entry.compiled.violations(payload, PAYLOAD_PATH)


def _declared_version(uri: str) -> Registered | None:
	try:
		subject, version = parse_data_schema_uri(uri)
	except ValueError:
		return None
	return schema_version(subject, version)


def _unregistered(uri: str) -> Violation:
	return Violation(
		"$.dataSchema",
		"dataSchema",
		f"{uri} is not a registered schema version; send a registered one or leave dataSchema out",
	)


def _other_subject(uri: str, event_type: str) -> Violation:
	return Violation(
		"$.dataSchema",
		"dataSchema",
		f"{uri} is a schema of another event type, not of {event_type}; send a version of "
		f"urn:cauldron:schema:{event_type} or leave dataSchema out",
	)


def _latest(envelope: Envelope, derive: bool) -> Registered | None:
	entry = latest_schema(envelope.type)
	if entry is not None or not derive:
		return entry
	data = envelope.data
	schemas = site_schemas()
	if data.entity in schemas.derived or not is_document_event(envelope.type, data.entity, data.action):
		return None
	schemas.derived.add(data.entity)
	if not ensure_doctype_schemas(data.entity):
		return None
	return latest_schema(envelope.type)


def describe_violations(envelope: Envelope, violations: Sequence[Violation]) -> str:
	"""Returns one line naming the schema an event broke and every violation (path, rule, fix)."""
	label = _("The event {0} does not match its schema {1}:").format(envelope.type, envelope.data_schema)
	return f"{label} " + "; ".join(str(v) for v in violations)


def reject(failures: Sequence[tuple[Envelope, Sequence[Violation]]]) -> None:
	"""Raises EventSchemaViolation naming each invalid event and each violation's path and rule."""
	blocks = []
	lines = []
	for envelope, violations in failures:
		label = _("The event {0} does not match its schema {1}:").format(envelope.type, envelope.data_schema)
		blocks.append(
			"<p>{}</p><ul>{}</ul>".format(
				html.escape(label), "".join(f"<li>{html.escape(str(v))}</li>" for v in violations)
			)
		)
		lines.append(describe_violations(envelope, violations))
	hint = _(
		"Correct the data, or ask an administrator to register a schema version that accepts it "
		"(or to record such events as invalid in Fabric Settings)."
	)
	frappe.msgprint(
		"".join(blocks) + f"<p>{html.escape(hint)}</p>",
		title=_("Event does not match its schema"),
		indicator="red",
	)
	raise EventSchemaViolation(" ".join(lines) + " " + hint)
