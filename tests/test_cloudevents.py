"""CloudEvents 1.0: every wire form round-trips losslessly and the official SDK accepts it."""

import json

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat

from cauldron_fabric.core import cloudevents as ce
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import InvalidEnvelope
from conftest import make_envelope


@pytest.fixture
def envelope():
	return make_envelope("Sales Invoice", "SINV-7", "submitted", grand_total=99.5, items=[{"item": "A"}])


def test_kafka_default_value_is_the_seed_envelope_and_headers_make_a_binary_cloudevent(envelope):
	wire = ce.to_kafka(envelope)
	assert json.loads(wire.body) == envelope.to_dict()
	message = ce_kafka.KafkaMessage(
		headers={k: v.encode() for k, v in wire.headers}, key=None, value=wire.body
	)
	event = ce_kafka.from_binary(message, JSONFormat())
	assert event.get_id() == envelope.id
	assert event.get_type() == "sales_invoice.submitted"
	assert event.get_source() == envelope.source
	assert event.get_extension("correlationid") == envelope.metadata.correlation_id
	assert event.get_extension("tenantid") == "test.localhost"
	assert event.get_data() == envelope.to_dict()


def test_kafka_default_round_trip(envelope):
	wire = ce.to_kafka(envelope)
	assert ce.from_headers(wire.headers, wire.body) == envelope


def test_structured_round_trip_and_sdk_acceptance(envelope):
	document = ce.to_structured(envelope)
	assert document["specversion"] == "1.0" and document["data"]["entityId"] == "SINV-7"
	assert "correlationId" not in document and document["correlationid"] == envelope.metadata.correlation_id
	assert ce.from_structured(json.dumps(document)) == envelope
	message = ce.to_structured_message(envelope)
	sdk_event = ce_kafka.from_structured(
		ce_kafka.KafkaMessage(headers=dict(message.headers), key=None, value=message.body), JSONFormat()
	)
	assert sdk_event.get_id() == envelope.id
	assert ce.from_headers(message.headers, message.body) == envelope


@pytest.mark.parametrize("prefix", [ce.KAFKA_PREFIX, ce.HTTP_PREFIX, ce.AMQP_PREFIX])
def test_binary_round_trip_for_every_binding(envelope, prefix):
	wire = ce.to_binary(envelope, prefix)
	read = ce.from_http if prefix == ce.HTTP_PREFIX else ce.from_headers
	assert json.loads(wire.body) == {
		"entity": "Sales Invoice",
		"entityId": "SINV-7",
		"action": "submitted",
		"payload": envelope.data.payload,
	}
	assert read(wire.headers, wire.body) == envelope


def test_http_binary_is_accepted_by_the_sdk(envelope):
	wire = ce.to_binary(envelope, ce.HTTP_PREFIX)
	event = ce_http.from_binary(ce_http.HTTPMessage(headers=wire.header_dict(), body=wire.body), JSONFormat())
	assert event.get_type() == envelope.type
	assert event.get_extension("userid") == "Administrator"


def test_http_binary_percent_encodes_what_http_headers_cannot_carry():
	# HTTP header values are Latin-1 at most: the binding percent-encodes UTF-8 (spec 3.1.3.2).
	envelope = make_envelope("ToDo", "漢字 100%", "updated")
	wire = ce.to_binary(envelope, ce.HTTP_PREFIX)
	assert all(value.isascii() and " " not in value for _, value in wire.headers)
	event = ce_http.from_binary(ce_http.HTTPMessage(headers=wire.header_dict(), body=wire.body), JSONFormat())
	assert event.get_subject() == "ToDo/漢字 100%"
	assert ce.from_http(wire.headers, wire.body) == envelope


def test_round_trip_keeps_schema_reference_and_null_metadata(envelope):
	with_schema = envelope.with_schema("urn:cauldron:schema:sales_invoice.submitted:1")
	assert with_schema.metadata.causation_id is None
	for wire in (ce.to_kafka(with_schema), ce.to_binary(with_schema), ce.to_structured_message(with_schema)):
		assert ce.from_headers(wire.headers, wire.body) == with_schema


def test_relay_headers_from_the_json_are_the_kafka_headers(envelope):
	"""Headers from the JSON (the relay's path) equal the generic path's and the envelope's, byte for byte."""
	with_schema = envelope.with_schema("urn:cauldron:schema:sales_invoice.submitted:1")
	all_metadata = json.loads(with_schema.to_json())
	all_metadata["metadata"]["causationId"] = "01a2-cause"
	bodies = [json.loads(e.to_json()) for e in (envelope, with_schema)] + [all_metadata]
	bare = json.loads(envelope.to_json())
	del bare["specVersion"], bare["metadata"]
	for body in [*bodies, bare, {**bare, "metadata": None, "dataSchema": ""}]:
		assert ce.kafka_headers(body) == ce.binary_headers(ce.attributes_of(body))
	for body in bodies:
		assert ce.kafka_headers(body) == ce.kafka_headers(Envelope.from_dict(body))
	assert [name for name, _ in ce.kafka_headers(all_metadata)] == [
		"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "ce_subject", "ce_dataschema",
		"ce_correlationid", "ce_causationid", "ce_userid", "ce_tenantid", "content-type",
	]  # fmt: skip


def test_sdk_made_cloudevent_becomes_an_envelope():
	import datetime as dt

	from cloudevents.core.v1.event import CloudEvent

	event = CloudEvent(
		{
			"id": "e-1",
			"type": "agent.task.created",
			"source": "agents",
			"subject": "Agent Task/T-9",
			"time": dt.datetime(2026, 11, 26, 10, tzinfo=dt.timezone.utc),
			"correlationid": "c-1",
			"datacontenttype": "application/json",
		},
		{"title": "summarise"},
	)
	message = ce_kafka.to_binary(event, JSONFormat())
	envelope = ce.from_headers(list(message.headers.items()), message.value)
	assert envelope.data.entity == "Agent Task" and envelope.data.entity_id == "T-9"
	assert envelope.data.action == "created" and envelope.data.payload == {"title": "summarise"}
	assert envelope.metadata.correlation_id == "c-1"
	assert envelope.time.startswith("2026-11-26T10:00:00")


def test_contradicting_headers_are_refused(envelope):
	wire = ce.to_kafka(envelope)
	forged = [(k, "other-id" if k == "ce_id" else v) for k, v in wire.headers]
	with pytest.raises(InvalidEnvelope, match="contradicts"):
		ce.from_headers(forged, wire.body)


def test_an_attribute_header_given_twice_with_different_values_is_refused(envelope):
	wire = ce.to_kafka(envelope)
	forged = [("ce_id", "other-id"), *wire.headers]  # read last-wins, the forged one slipped by
	with pytest.raises(InvalidEnvelope, match="header ce_id is given twice with different values"):
		ce.from_headers(forged, wire.body)
	repeated = [*wire.headers, ("ce_id", envelope.id)]  # the same value twice is one value
	assert ce.from_headers(repeated, wire.body) == envelope


def test_a_message_that_is_neither_is_refused():
	with pytest.raises(InvalidEnvelope, match="neither a fabric envelope nor a CloudEvent"):
		ce.from_headers([], b'{"hello": 1}')
	with pytest.raises(InvalidEnvelope, match="not valid JSON"):
		ce.from_headers([("ce_id", "x")], b"\xff\xfe")


def test_envelope_survives_every_form_in_sequence(envelope):
	once = ce.from_structured(ce.to_structured(envelope))
	twice = ce.from_headers(*_pair(ce.to_binary(once, ce.AMQP_PREFIX)))
	thrice = ce.from_headers(*_pair(ce.to_kafka(twice)))
	assert thrice == envelope and Envelope.from_json(thrice.to_json()) == envelope


def _pair(wire):
	return wire.headers, wire.body


FOREIGN = {
	"specversion": "1.0",
	"id": "e-7",
	"type": "agent.task.created",
	"source": "agents",
	"time": "2026-11-26T10:00:00Z",
	"data": {"title": "x"},
}


def test_structured_attributes_of_the_wrong_json_type_are_refused_not_turned_into_text():
	for key, value, says in (
		("id", {"a": 1}, "'id' must be a string, not a JSON object"),
		("type", ["agent.task.created"], "'type' must be a string, not a JSON array"),
		("source", 5, "'source' must be a string, not a JSON number"),
		("dataschema", True, "'dataschema' must be a string, not a JSON boolean"),
		("correlationid", {"a": 1}, "'correlationid' must be a string or an integer, not a JSON object"),
		("tenantid", 1.5, "'tenantid' must be a string or an integer, not a JSON number"),
	):
		with pytest.raises(InvalidEnvelope) as caught:
			ce.from_structured({**FOREIGN, key: value})
		assert says in str(caught.value), (key, str(caught.value))
	# An integer extension is one of CloudEvents' types: it is kept, as text.
	assert ce.from_structured({**FOREIGN, "correlationid": 42}).metadata.correlation_id == "42"


def test_a_binary_cloudevent_without_a_body_has_an_empty_payload():
	headers = [
		("ce_specversion", "1.0"),
		("ce_id", "e-8"),
		("ce_type", "agent.task.deleted"),
		("ce_source", "agents"),
		("ce_time", "2026-11-26T10:00:00Z"),
		("ce_subject", "Agent Task/T-1"),
	]
	for body in (b"", None):
		envelope = ce.from_headers(headers, body)
		assert envelope.data.payload == {} and envelope.data.entity_id == "T-1"
	assert ce.from_headers(headers, b"7").data.payload == {"value": 7}
