"""Validation of events: every violation with its JSON path and rule, cached validators, dataSchema."""

import urllib.parse

import pytest

from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import InvalidEnvelope, PermanentError
from cauldron_fabric.core.schema.catalog import catalog_entry
from cauldron_fabric.core.schema.dialect import check_schema
from cauldron_fabric.core.schema.errors import InvalidSchema, SchemaViolation
from cauldron_fabric.core.schema.identity import schema_fingerprint, with_registry_id
from cauldron_fabric.core.schema.validation import (
	CompiledSchema,
	ValidatorCache,
	data_schema_uri,
	parse_data_schema_uri,
	payload_violations,
	validate_envelope,
	validate_payload,
)
from conftest import make_envelope

ORDER = {
	"$schema": "https://json-schema.org/draft/2020-12/schema",
	"type": "object",
	"required": ["customer", "items"],
	"additionalProperties": False,
	"properties": {
		"customer": {"type": "string", "minLength": 1},
		"currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
		"posting_date": {"type": "string", "format": "date"},
		"status": {"enum": ["Draft", "Submitted"]},
		"items": {
			"type": "array",
			"minItems": 1,
			"items": {
				"type": "object",
				"required": ["item_code", "qty"],
				"properties": {
					"item_code": {"type": "string"},
					"qty": {"type": "number", "exclusiveMinimum": 0},
				},
			},
		},
	},
}
GOOD = {
	"customer": "Grant Plastics",
	"currency": "EUR",
	"posting_date": "2026-03-02",
	"items": [{"item_code": "W", "qty": 2}],
}


def order_event(payload):
	return make_envelope("Sales Order", "SO-1", "submitted", **payload)


def test_a_valid_envelope_is_stamped_with_its_schema_version():
	envelope = validate_envelope(order_event(GOOD), ORDER, version=3, cache=ValidatorCache())
	assert envelope.data_schema == "urn:cauldron:schema:sales_order.submitted:3"
	assert Envelope.from_json(envelope.to_json()).data_schema == envelope.data_schema


def test_every_violation_is_listed_with_its_path_rule_and_fix():
	bad = {
		"currency": "eur",
		"posting_date": "2026-02-30",
		"status": "Lost",
		"items": [{"item_code": "W", "qty": 2}, {"item_code": 7, "qty": 0}, {"item_code": "X"}],
		"colour": "red",
	}
	with pytest.raises(SchemaViolation) as caught:
		validate_envelope(order_event(bad), ORDER, version=1, cache=ValidatorCache())
	found = {(v.path, v.rule) for v in caught.value.violations}
	assert found == {
		("$.data.payload.customer", "required"),
		("$.data.payload.currency", "pattern"),
		("$.data.payload.posting_date", "format"),
		("$.data.payload.status", "enum"),
		("$.data.payload.items[1].item_code", "type"),
		("$.data.payload.items[1].qty", "exclusiveMinimum"),
		("$.data.payload.items[2].qty", "required"),
		("$.data.payload.colour", "additionalProperties"),
	}
	messages = {v.path: v.message for v in caught.value.violations}
	assert messages["$.data.payload.items[2].qty"] == "'qty' is required; add it"
	assert "remove it" in messages["$.data.payload.colour"]
	assert "use one of" in messages["$.data.payload.status"]
	assert "send a value > 0" in messages["$.data.payload.items[1].qty"]
	error = caught.value
	assert isinstance(error, PermanentError) and not error.retryable
	assert error.subject == "sales_order.submitted" and error.version == 1
	assert "$.data.payload.items[1].qty" in str(error) and "send the event again" in str(error)


def test_a_bare_payload_gets_paths_from_its_own_root():
	violations = payload_violations({"items": []}, ORDER, "sales_order.submitted", 1, cache=ValidatorCache())
	assert {(v.path, v.rule) for v in violations} == {("$.customer", "required"), ("$.items", "minItems")}
	assert payload_violations(GOOD, ORDER, "sales_order.submitted", 1, cache=ValidatorCache()) == []
	with pytest.raises(SchemaViolation, match=r"\$\.customer"):
		validate_payload(
			{"items": [{"item_code": "W", "qty": 1}]}, ORDER, "sales_order.submitted", 1, ValidatorCache()
		)


def test_a_malformed_envelope_is_refused_before_the_schema():
	with pytest.raises(InvalidEnvelope):
		validate_envelope({"type": "sales_order.submitted"}, ORDER, version=1)


def test_odd_keys_are_quoted_in_paths():
	schema = {
		"type": "object",
		"properties": {"odd key": {"type": "object", "properties": {"x-y": {"type": "integer"}}}},
	}
	(violation,) = CompiledSchema(schema).violations({"odd key": {"x-y": "1"}})
	assert violation.path == "$['odd key']['x-y']" and violation.rule == "type"
	assert violation.message == 'expected integer, got "1"'


def test_the_catalog_schema_rejects_a_bad_approval_request_with_paths():
	entry = catalog_entry("agent.approval.requested")
	body = make_envelope("Approval Request", "APR-1", "requested").to_dict()
	body["type"] = "agent.approval.requested"
	body["data"]["payload"] = {
		**entry.examples[0],
		"risk": "extreme",
		"approvers": {"roles": [], "users": []},
	}
	del body["data"]["payload"]["dueBy"]
	with pytest.raises(SchemaViolation) as caught:
		validate_envelope(body, entry.schema, entry.version, cache=ValidatorCache())
	paths = {(v.path, v.rule) for v in caught.value.violations}
	assert ("$.data.payload.risk", "enum") in paths
	assert ("$.data.payload.dueBy", "required") in paths
	assert ("$.data.payload.approvers", "anyOf") in paths


def test_compiled_validators_are_cached_per_subject_and_version():
	cache = ValidatorCache(max_size=2)
	first = cache.get("a.created", 1, ORDER)
	assert cache.get("a.created", 1, ORDER) is first
	assert first.compiled and first.data_schema == "urn:cauldron:schema:a.created:1"
	cache.get("a.created", 2, ORDER)
	cache.get("b.created", 1, ORDER)
	assert len(cache) == 2 and cache.get("a.created", 1, ORDER) is not first
	cache.invalidate("a.created")
	assert len(cache) == 1
	assert cache.for_schema(dict(ORDER)) is cache.for_schema(dict(ORDER))
	cache.invalidate()
	assert len(cache) == 0


def test_a_schema_the_compiler_cannot_reproduce_still_validates_through_jsonschema():
	schema = {"type": "array", "contains": {"type": "integer"}}
	compiled = CompiledSchema(schema)
	assert not compiled.compiled
	assert compiled.is_valid(["a", 1]) and not compiled.is_valid(["a"])
	assert [v.rule for v in compiled.violations(["a"])] == ["contains"]


def test_draft07_schemas_are_accepted():
	schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["a"]}
	assert [v.rule for v in CompiledSchema(schema).violations({})] == ["required"]


def test_data_schema_references_are_uris_and_round_trip():
	uri = data_schema_uri("agent.approval.requested", 12)
	parts = urllib.parse.urlsplit(uri)
	assert parts.scheme == "urn" and parts.path == "cauldron:schema:agent.approval.requested:12"
	assert parse_data_schema_uri(uri) == ("agent.approval.requested", 12)
	for bad_subject, bad_version in (("Bad Subject", 1), ("user.login", 0), ("user.login", True)):
		with pytest.raises(ValueError):
			data_schema_uri(bad_subject, bad_version)
	with pytest.raises(ValueError, match="not a schema reference"):
		parse_data_schema_uri("https://example.com/schema.json")


def test_a_registry_id_is_not_content_but_a_users_own_id_is():
	body = {"type": "object", "properties": {"qty": {"type": "integer"}}}
	as_v1 = {"$id": data_schema_uri("sales_order.placed", 1), **body}
	as_v3 = with_registry_id(as_v1, data_schema_uri("sales_order.placed", 3))
	assert as_v3 == {"$id": "urn:cauldron:schema:sales_order.placed:3", **body}
	assert as_v1["$id"].endswith(":1")  # a copy: the schema sent is left as it was
	assert schema_fingerprint(as_v1) == schema_fingerprint(as_v3) == schema_fingerprint(body)
	own = {"$id": "https://schemas.example.com/order.json", **body}
	assert with_registry_id(own, data_schema_uri("sales_order.placed", 3)) == own
	assert schema_fingerprint(own) != schema_fingerprint(body)


def test_a_nested_id_is_refused_because_validation_cannot_resolve_its_refs():
	schema = {
		"type": "object",
		"properties": {
			"a": {"$id": "http://example.com/sub.json", "properties": {"b": {"$ref": "#/$defs/x"}}}
		},
		"$defs": {"x": {"type": "string"}},
	}
	with pytest.raises(InvalidSchema, match=r"nested \$id"):
		check_schema(schema)


def test_a_deeply_nested_payload_is_a_violation_not_a_crash():
	tree = {"$defs": {"node": {"type": "object", "properties": {"n": {"$ref": "#/$defs/node"}}}}}
	compiled = CompiledSchema({**tree, "$ref": "#/$defs/node"})
	payload: dict = {}
	for _ in range(2000):
		payload = {"n": payload}
	assert compiled.is_valid(payload) is False
	assert [v.rule for v in compiled.violations(payload)] == ["depth"]
