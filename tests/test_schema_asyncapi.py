"""The AsyncAPI document validates against the official AsyncAPI 3.0 JSON Schema.

The schema is ``schemas/3.0.0.json`` of the npm package ``@asyncapi/specs`` 6.11.1
(Apache-2.0, see fixtures/asyncapi/LICENSE and NOTICE), vendored unchanged.
"""

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft7Validator

from cauldron_fabric.core.naming import topic_for
from cauldron_fabric.core.schema.asyncapi import asyncapi_document, cloudevents_headers_schema
from cauldron_fabric.core.schema.catalog import CatalogEntry, load_catalog
from cauldron_fabric.core.schema.dialect import FORMAT_CHECKER, resolve_ref
from cauldron_fabric.core.schema.doctype_schema import document_event_schemas

SPEC = Path(__file__).parent / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"


@pytest.fixture(scope="module")
def spec_validator():
	schema = json.loads(SPEC.read_text())
	assert schema["$id"] == "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
	return Draft7Validator(schema)


@pytest.fixture(scope="module")
def document():
	return asyncapi_document(load_catalog(), servers={"local": "localhost:9092"})


def test_the_document_validates_against_the_asyncapi_3_schema(spec_validator, document):
	errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in spec_validator.iter_errors(document)]
	assert errors == []
	assert document["asyncapi"] == "3.0.0"


@pytest.mark.parametrize(
	"corrupt",
	[
		lambda d: d["operations"][next(iter(d["operations"]))].update(action="publish"),
		lambda d: d.pop("info"),
		lambda d: d["channels"][next(iter(d["channels"]))].update(address=5),
		lambda d: d["components"]["messages"][next(iter(d["components"]["messages"]))].update(contentType=1),
	],
)
def test_the_spec_schema_catches_a_broken_document(spec_validator, document, corrupt):
	broken = copy.deepcopy(document)
	corrupt(broken)
	assert not spec_validator.is_valid(broken)


def test_every_reference_points_inside_the_document(document):
	refs = []

	def walk(node):
		if isinstance(node, dict):
			if isinstance(node.get("$ref"), str):
				refs.append(node["$ref"])
			for value in node.values():
				walk(value)
		elif isinstance(node, list):
			for value in node:
				walk(value)

	walk(document)
	assert len(refs) > 100
	for ref in refs:
		assert ref.startswith("#/") and resolve_ref(document, ref) is not None


def test_channels_messages_and_operations_follow_topics_and_directions(document):
	catalog = load_catalog()
	assert document["channels"]["cauldron.user"]["address"] == "cauldron.user"
	assert set(document["channels"]["cauldron.user"]["messages"]) == {
		"user.activity",
		"user.login",
		"user.logout",
		"user.request",
	}
	assert len(document["components"]["messages"]) == len(catalog)
	ops = document["operations"]
	assert ops["core.send.user.login"]["action"] == "send"
	assert ops["aegis_protocol.receive.user.login"]["action"] == "receive"
	assert ops["lore.receive.document.created"]["action"] == "receive"
	assert not any(key.startswith("lore.send.document.created") for key in ops)
	sends = sum(1 for op in ops.values() if op["action"] == "send")
	assert sends == sum(1 for e in catalog if e.direction == "published")
	for op in ops.values():
		message = resolve_ref(document, op["messages"][0]["$ref"])
		assert resolve_ref(document, message["$ref"])["name"] in op["summary"]


def test_examples_are_valid_messages(document):
	headers = Draft7Validator(cloudevents_headers_schema(), format_checker=FORMAT_CHECKER)
	checked = 0
	for message in document["components"]["messages"].values():
		payload = Draft7Validator(message["payload"], format_checker=FORMAT_CHECKER)
		for example in message["examples"]:
			assert list(payload.iter_errors(example["payload"])) == [], message["name"]
			assert list(headers.iter_errors(example["headers"])) == [], message["name"]
			checked += 1
		wrong = copy.deepcopy(message["examples"][0]["payload"])
		wrong["type"] = "other.event"
		assert not payload.is_valid(wrong)
	assert checked >= len(document["components"]["messages"])


def test_payload_schemas_are_self_contained_draft07(document):
	text = json.dumps(document["components"]["messages"])
	assert "$defs" not in text and "2020-12" not in text and "prefixItems" not in text


def test_a_topic_naming_rule_decides_the_channels():
	def per_type(entry):
		return topic_for("fabric.{type}", entry.type, entry.entity, None)

	document = asyncapi_document(load_catalog(), per_type)
	assert "fabric.agent.approval.requested" in document["channels"]
	assert all(len(channel["messages"]) == 1 for channel in document["channels"].values())
	assert "servers" not in document


def test_derived_document_events_join_the_document(spec_validator):
	fields = [{"fieldname": "customer", "fieldtype": "Link", "options": "Customer", "reqd": 1}]
	derived = [
		CatalogEntry(
			type=event_type,
			version=2,
			owner="core",
			direction="published",
			description=f"{event_type} of a Sales Order.",
			schema=schema,
			examples=(),
			entity="Sales Order",
		)
		for event_type, schema in document_event_schemas("Sales Order", fields).items()
	]
	document = asyncapi_document([*load_catalog(), *derived])
	assert spec_validator.is_valid(document)
	assert len(document["channels"]["cauldron.sales_order"]["messages"]) == 7
	message = document["components"]["messages"]["sales_order.submitted"]
	assert message["x-dataschema"] == "urn:cauldron:schema:sales_order.submitted:2"
	doc = message["payload"]["properties"]["data"]["properties"]["payload"]["properties"]["doc"]
	assert doc["required"] == ["doctype", "name", "docstatus", "customer"]


def test_an_owner_outside_the_cauldron_modules_is_named_as_given(spec_validator):
	entry = CatalogEntry(
		type="warehouse.audit.completed",
		version=1,
		owner="Stock Team",
		direction="published",
		description="A warehouse audit was completed.",
		schema={"type": "object"},
		examples=({},),
		entity="Warehouse",
	)
	document = asyncapi_document([entry])
	assert spec_validator.is_valid(document)
	operation = document["operations"]["Stock_Team.send.warehouse.audit.completed"]
	assert operation["summary"] == "Stock Team publishes warehouse.audit.completed."
	assert entry.owner_title == "Stock Team"


def test_a_recursive_schema_is_pointed_to_and_the_document_still_builds(spec_validator):
	# Inlining a recursive $ref cannot end: one such schema failed the whole document.
	tree = {
		"type": "object",
		"properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
	}
	entries = [
		CatalogEntry(
			type="org_chart.changed",
			version=3,
			owner="HR Team",
			direction="published",
			description="The org chart changed.",
			schema=tree,
			examples=({"children": []},),
			entity="Org Chart",
		),
		*load_catalog(),
	]
	document = asyncapi_document(entries)
	assert spec_validator.is_valid(document)
	value = document["components"]["messages"]["org_chart.changed"]["payload"]
	payload = value["properties"]["data"]["properties"]["payload"]
	assert payload["type"] == "object"
	assert "urn:cauldron:schema:org_chart.changed:3" in payload["description"]
	assert "recursive" in payload["description"]
	# The other events keep their schemas written out.
	assert len(document["components"]["messages"]) == len(entries)
