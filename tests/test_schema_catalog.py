"""The event catalog: every event of section 6, owned and directed as the source document says."""

import json

import pytest

from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.naming import (
	BUSINESS_TRANSACTION,
	SYSTEM_CHANGE,
	SYSTEM_STATUS,
	USER_LOGIN,
	USER_LOGOUT,
)
from cauldron_fabric.core.schema.catalog import (
	CATALOG_DIR,
	MODULES,
	CatalogEntry,
	catalog_entry,
	load_catalog,
)
from cauldron_fabric.core.schema.errors import InvalidSchema, SchemaViolation
from cauldron_fabric.core.schema.validation import CompiledSchema, ValidatorCache, validate_envelope
from conftest import make_envelope

# Section 6 of the source document, module by module: (published, consumed).
SECTION_6 = {
	"lore": (
		["document.indexed", "insight.generated", "skill_map.updated", "knowledge_source.synced"],
		["document.created", "document.updated", "user.activity", "agent.task.completed"],
	),
	"aegis_protocol": (
		[
			"security.event",
			"security.alert",
			"security.incident",
			"vulnerability.discovered",
			"threat.detected",
		],
		["user.login", "resource.access", "system.change", "agent.activity", "infrastructure.event"],
	),
	"synapse": (
		[
			"metric.updated",
			"forecast.generated",
			"anomaly.detected",
			"recommendation.created",
			"dashboard.updated",
		],
		["business.transaction", "user.activity", "system.performance", "external.market", "agent.analysis"],
	),
	"command_and_cauldron": (
		["build.status", "deployment.status", "code.analysis", "test.results", "issue.updated"],
		[
			"code.committed",
			"pull_request.created",
			"infrastructure.change",
			"security.vulnerability",
			"agent.development",
		],
	),
	"agents": (
		[
			"agent.task.created",
			"agent.task.started",
			"agent.task.completed",
			"agent.task.failed",
			"agent.insight",
			"agent.approval.requested",
		],
		["business.event", "user.request", "approval.response", "system.status", "knowledge.updated"],
	),
}
FABRIC_EVENTS = [
	BUSINESS_TRANSACTION,
	USER_LOGIN,
	USER_LOGOUT,
	SYSTEM_CHANGE,
	SYSTEM_STATUS,
	"approval.response",
]


@pytest.fixture(scope="module")
def catalog():
	return {entry.type: entry for entry in load_catalog()}


def test_every_event_of_section_6_is_in_the_catalog(catalog):
	named = {t for published, consumed in SECTION_6.values() for t in published + consumed}
	assert named | set(FABRIC_EVENTS) == set(catalog)
	assert all(entry.version == 1 for entry in catalog.values())


def test_owners_directions_and_consumers_follow_section_6(catalog):
	for module, (published, consumed) in SECTION_6.items():
		for event_type in published:
			assert (catalog[event_type].owner, catalog[event_type].direction) == (module, "published")
		for event_type in consumed:
			entry = catalog[event_type]
			assert module == entry.owner or module in entry.consumers, (module, event_type)
	for event_type in FABRIC_EVENTS:
		assert (catalog[event_type].owner, catalog[event_type].direction) == ("core", "published")
	assert {e.owner for e in catalog.values()} == set(MODULES)


def test_every_example_validates_inside_a_whole_envelope(catalog):
	cache = ValidatorCache()
	checked = 0
	for entry in catalog.values():
		assert entry.examples and entry.description and entry.schema["$schema"].endswith("2020-12/schema")
		for example in entry.examples:
			event = make_envelope(entry.entity or "Event", "E-1", "created").to_dict()
			event["type"], event["data"]["payload"] = entry.type, example
			stamped = validate_envelope(event, entry.schema, entry.version, cache=cache)
			assert stamped.data_schema == f"urn:cauldron:schema:{entry.type}:1"
			checked += 1
	assert checked >= len(catalog)


def test_payloads_are_closed_so_unknown_fields_are_caught(catalog):
	for entry in catalog.values():
		compiled = CompiledSchema(entry.schema)
		broken = {**entry.examples[0], "unexpectedField": 1}
		assert [v.path for v in compiled.violations(broken)] == ["$.unexpectedField"], entry.type


def test_every_required_field_is_enforced(catalog):
	for entry in catalog.values():
		compiled = CompiledSchema(entry.schema)
		for name in entry.schema.get("required", []):
			example = {k: v for k, v in entry.examples[0].items() if k != name}
			assert (f"$.{name}", "required") in {(v.path, v.rule) for v in compiled.violations(example)}


def test_approval_request_carries_what_a_person_needs_to_decide(catalog):
	schema = catalog["agent.approval.requested"].schema
	assert set(schema["required"]) >= {
		"agent",
		"task",
		"actionSummary",
		"payload",
		"risk",
		"dueBy",
		"approvers",
	}
	assert schema["properties"]["risk"]["enum"] == ["low", "medium", "high", "critical"]
	compiled = CompiledSchema(schema)
	example = catalog["agent.approval.requested"].examples[0]
	for approvers, ok in (({"roles": ["Accounts Manager"]}, True), ({"users": ["a@b.c"]}, True), ({}, False)):
		assert compiled.is_valid({**example, "approvers": approvers}) is ok
	assert not compiled.is_valid({**example, "dueBy": "tomorrow"})


def test_approval_response_carries_the_decision(catalog):
	entry = catalog["approval.response"]
	assert set(entry.schema["required"]) == {"requestId", "decision", "decidedBy", "decidedAt"}
	compiled = CompiledSchema(entry.schema)
	assert not compiled.is_valid({**entry.examples[0], "decision": "maybe"})


def test_fabric_events_accept_what_the_fabric_emits(catalog):
	"""Shapes as the Frappe layer builds them (emit/document_events.py, session.py, services/status.py)."""
	emitted = {
		BUSINESS_TRANSACTION: {
			"doctype": "Sales Invoice",
			"name": "SINV-1",
			"docstatus": 1,
			"company": "C",
			"customer": "X",
			"grand_total": 10.0,
			"currency": "EUR",
			"status": "Unpaid",
			"doc": {"doctype": "Sales Invoice", "name": "SINV-1", "items": []},
		},
		USER_LOGIN: {"user": "a@b.c", "fullName": "A B", "ip": "127.0.0.1", "userAgent": None},
		SYSTEM_CHANGE: {
			"doctype": "Role",
			"name": "R",
			"action": "renamed",
			"doc": {},
			"oldName": "Q",
			"newName": "R",
			"merge": False,
		},
		SYSTEM_STATUS: {
			"site": "s",
			"frappeVersion": "15.0.0",
			"fabricVersion": "0.1.0",
			"outbox": {"pending": 0, "failed": 0, "oldestPendingSeconds": 0},
			"relays": [{"name": "r", "heartbeat": "2026-01-01 00:00:00", "published": 4, "stale": False}],
			"publishing": True,
		},
	}
	for event_type, payload in emitted.items():
		assert CompiledSchema(catalog[event_type].schema).violations(payload) == [], event_type


def test_a_bad_catalog_file_is_refused_with_its_name(tmp_path):
	entry = _raw("user.login")
	entry["owner"] = "marketing"
	entry["schema"]["properties"]["user"]["type"] = "text"
	(tmp_path / "user.login.json").write_text(json.dumps(entry))
	with pytest.raises(InvalidSchema) as caught:
		load_catalog(tmp_path)
	problems = " | ".join(caught.value.problems)
	assert "user.login.json: module 'marketing' is unknown" in problems and "'text' is not valid" in problems


def test_a_catalog_file_must_be_named_after_its_type(tmp_path):
	(tmp_path / "user.logon.json").write_text(json.dumps(_raw("user.login")))
	with pytest.raises(InvalidSchema, match="named after its type"):
		load_catalog(tmp_path)


def test_an_envelope_that_breaks_the_catalog_schema_names_the_field():
	entry = catalog_entry(USER_LOGIN)
	body = make_envelope("User", "a@b.c", "login").to_dict()
	body["type"] = USER_LOGIN
	body["data"]["payload"] = {"fullName": 5}
	with pytest.raises(SchemaViolation) as caught:
		validate_envelope(Envelope.from_dict(body), entry.schema, entry.version)
	assert {v.path for v in caught.value.violations} == {"$.data.payload.user", "$.data.payload.fullName"}


def test_entries_expose_subject_and_module_title():
	entry = catalog_entry("threat.detected")
	assert isinstance(entry, CatalogEntry) and entry.subject == "threat.detected"
	assert entry.owner_title == "Aegis Protocol" and catalog_entry("no.such.event") is None


def _raw(event_type):
	return json.loads((CATALOG_DIR / f"{event_type}.json").read_text())
