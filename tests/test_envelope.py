"""The seed envelope (section 3.2): exact JSON shape, round trips, clear errors."""

import dataclasses
import datetime as dt
import decimal
import json
import re
import uuid

import pytest

from cauldron_fabric.core.envelope import (
	MAX_PAYLOAD_DEPTH,
	Envelope,
	_json_default,
	dumps,
	format_time,
	is_rfc3339,
	json_depth,
	new_event_id,
	parse_time,
	utc_now_iso,
)
from cauldron_fabric.core.errors import InvalidEnvelope, PermanentError
from conftest import make_envelope


def test_json_has_the_seed_structure_exactly():
	body = make_envelope("Sales Invoice", "SINV-1", "submitted", grand_total=10).to_dict()
	assert list(body) == [
		"id",
		"type",
		"source",
		"time",
		"dataContentType",
		"specVersion",
		"data",
		"metadata",
	]
	assert list(body["data"]) == ["entity", "entityId", "action", "payload"]
	assert list(body["metadata"]) == ["correlationId", "causationId", "userId", "tenantId"]
	assert body["specVersion"] == "1.0" and body["dataContentType"] == "application/json"
	assert body["type"] == "sales_invoice.submitted"


def test_round_trip_through_json_is_lossless():
	envelope = make_envelope(items=[{"qty": 2, "rate": 1.5}], note="ünïcode ✓", flag=None)
	assert Envelope.from_json(envelope.to_json()) == envelope
	with_schema = envelope.with_schema("urn:cauldron:schema:todo.updated:2")
	assert Envelope.from_json(with_schema.to_json()) == with_schema


def test_with_schema_changes_the_schema_only():
	# Every field set apart from its default, so that a field with_schema forgot would show.
	values = {f.name: f"value of {f.name}" for f in dataclasses.fields(Envelope)}
	envelope = Envelope(**values)
	assert envelope.with_schema("urn:x:1") == dataclasses.replace(envelope, data_schema="urn:x:1")


def test_payload_values_that_json_lacks_are_converted():
	envelope = make_envelope(
		when=dt.datetime(2026, 1, 2, 3, 4, 5),
		day=dt.date(2026, 1, 2),
		amount=decimal.Decimal("1.25"),
		tags={"a"},
	)
	payload = json.loads(envelope.to_json())["data"]["payload"]
	assert payload == {"when": "2026-01-02T03:04:05", "day": "2026-01-02", "amount": 1.25, "tags": ["a"]}


def test_every_defect_is_listed_in_one_error():
	with pytest.raises(InvalidEnvelope) as caught:
		Envelope.from_dict({"id": "", "type": "Bad Type", "time": "yesterday", "data": {"entity": "ToDo"}})
	problems = " | ".join(caught.value.problems)
	for expected in (
		"'id' is required",
		"'type' 'Bad Type'",
		"'source' is required",
		"'time' 'yesterday'",
		"data.entityId",
		"data.action",
	):
		assert expected in problems
	assert isinstance(caught.value, PermanentError) and not caught.value.retryable
	assert "section 3.2" in str(caught.value)


def test_non_json_and_non_object_bodies_are_refused_clearly():
	with pytest.raises(InvalidEnvelope, match="not valid JSON"):
		Envelope.from_json(b"{nope")
	with pytest.raises(InvalidEnvelope, match="expected a JSON object, got list"):
		Envelope.from_dict([1, 2])


def test_missing_metadata_is_accepted_as_nulls():
	body = make_envelope().to_dict()
	del body["metadata"]
	envelope = Envelope.from_dict(body)
	assert envelope.metadata.correlation_id is None and envelope.metadata.tenant_id is None


@pytest.mark.parametrize("event_type", ["approval.response\n", "todo.updated\n", "a.b\n\n"])
def test_a_type_with_a_trailing_line_break_is_refused(event_type):
	# re.match with "$" let these pass, and with them the checks of which types the site
	# alone emits: "approval.response\n" is no catalog type, yet a subscription to
	# approval.* matched it.
	body = {**make_envelope().to_dict(), "type": event_type}
	with pytest.raises(InvalidEnvelope, match="'type'"):
		Envelope.from_dict(body)


def _nested(levels: int) -> dict:
	payload: dict = {"leaf": 1}
	for _ in range(levels - 1):
		payload = {"a": payload}
	return payload


def test_nesting_depth_is_measured_without_recursion():
	assert not json_depth({"a": 1}) > 1
	assert json_depth({"a": {"b": 1}}) > 1
	assert not json_depth({"a": [{"b": 1}]}) > 3
	assert json_depth({"a": [{"b": []}]}) > 3
	assert not json_depth({"a": [1, "x", None]}) > 2
	deep: list = []
	for _ in range(100_000):  # far past the interpreter's recursion limit
		deep = [deep]
	assert json_depth(deep) > 10


def test_a_payload_nested_too_deep_is_refused_before_anything_recursive_reads_it():
	body = make_envelope().to_dict()
	body["data"]["payload"] = {"x": _nested(MAX_PAYLOAD_DEPTH)}
	with pytest.raises(InvalidEnvelope, match=f"more than {MAX_PAYLOAD_DEPTH} levels deep"):
		Envelope.from_dict(body)
	body["data"]["payload"] = _nested(MAX_PAYLOAD_DEPTH)
	envelope = Envelope.from_dict(body)
	assert Envelope.from_json(envelope.to_json()) == envelope
	# Thousands of levels: refused with the same message, not a RecursionError.
	deep: dict = {}
	for _ in range(5000):
		deep = {"a": deep}
	body["data"]["payload"] = deep
	with pytest.raises(InvalidEnvelope, match="levels deep"):
		Envelope.from_dict(body)


@pytest.mark.parametrize(
	("key", "value"),
	[("dataSchema", 5), ("dataSchema", {"a": 1}), ("dataContentType", 5), ("dataContentType", [])],
)
def test_data_schema_and_content_type_must_be_text(key, value):
	body = {**make_envelope().to_dict(), key: value}
	with pytest.raises(InvalidEnvelope, match=f"'{key}' must be a string when given"):
		Envelope.from_dict(body)


@pytest.mark.parametrize("metadata", [[], "", 0, [1], "x"])
def test_metadata_that_is_no_object_is_refused_even_when_empty(metadata):
	body = {**make_envelope().to_dict(), "metadata": metadata}
	with pytest.raises(InvalidEnvelope, match="'metadata' must be an object"):
		Envelope.from_dict(body)


def test_event_ids_are_uuid7_and_time_ordered():
	ids = [new_event_id() for _ in range(200)]
	assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in ids)  # canonical form
	assert len(set(ids)) == 200
	millis = [uuid.UUID(i).int >> 80 for i in ids]
	assert millis == sorted(millis)


def test_time_is_utc_with_zone():
	envelope = make_envelope()
	assert envelope.time.endswith("Z")
	assert parse_time(envelope.time).utcoffset() == dt.timedelta(0)
	now = utc_now_iso()
	assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", now)
	assert format_time(parse_time(now)) == now


def test_partition_key_is_entity_and_id():
	assert make_envelope("Sales Invoice", "SINV-9").partition_key == "Sales Invoice/SINV-9"


def stdlib_dumps(value):
	"""The reference encoding: json with the envelope's own conversions."""
	return json.dumps(value, default=_json_default, separators=(",", ":"), ensure_ascii=False)


def test_fast_encoder_writes_what_the_standard_library_writes():
	payload = {
		"when": dt.datetime(2026, 11, 26, 12, 30, 5, 123456),
		"aware": dt.datetime(2026, 11, 26, 12, 30, tzinfo=dt.timezone.utc),
		"day": dt.date(2026, 11, 26),
		"at": dt.time(9, 15),
		"took": dt.timedelta(hours=1, seconds=3),
		"amount": decimal.Decimal("1234.50"),
		"tags": ("a", "b"),
		"blob": b"bytes \xff",
		"text": 'ü 漢字 🚀 "quoted" \\ \n',
		"numbers": [0, -1, 2**63 - 1, 1.5, 0.1, True, None],
		"nested": {"list": [{"x": dt.date(2020, 1, 1)}]},
		3: "int key",
	}
	assert dumps(payload) == stdlib_dumps(payload)
	assert json.loads(dumps({"set": {1}})) == {"set": [1]}


def test_values_the_fast_encoder_refuses_fall_back_to_the_standard_library():
	huge = {"n": 2**70, "s": "x"}
	assert dumps(huge) == stdlib_dumps(huge) == '{"n":1180591620717411303424,"s":"x"}'


def strict_loads(text):
	"""Parses JSON as every other parser does: NaN and Infinity are no JSON values."""
	return json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} is not JSON"))


def test_the_fallback_writes_nan_and_infinity_as_null_like_the_fast_encoder():
	# A payload the fast encoder refuses (an integer beyond 64 bits) must still come out as
	# JSON: the relay, consumers and the CloudEvents SDK all refuse a NaN token.
	assert dumps({"x": float("nan")}) == '{"x":null}'
	odd = {"n": 2**70, "x": float("nan"), "deep": [{"y": float("-inf")}], "tags": {float("inf")}}
	assert strict_loads(dumps(odd)) == {"n": 2**70, "x": None, "deep": [{"y": None}], "tags": [None]}


def test_a_body_with_nan_infinity_or_an_overflowing_number_is_no_json():
	body = make_envelope("Sales Order", "SO-1", qty=1).to_json()
	assert Envelope.from_json(body).data.payload == {"qty": 1}
	for token, says in (
		("NaN", "NaN is no JSON value"),
		("-Infinity", "-Infinity is no JSON value"),
		("1e999", "1e999 is too large for a number"),
	):
		with pytest.raises(InvalidEnvelope) as caught:
			Envelope.from_json(body.replace('"qty":1', f'"qty":{token}'))
		assert "body is not valid JSON" in str(caught.value) and says in str(caught.value)
	assert Envelope.from_json(body.replace('"qty":1', '"qty":1.5e300')).data.payload == {"qty": 1.5e300}


def test_a_body_naming_a_key_twice_is_no_event_at_any_depth():
	body = make_envelope("Sales Order", "SO-1", qty=1).to_json()
	for twice, key in (
		(body.replace('"qty":1', '"qty":1,"qty":2'), "qty"),
		(body.replace('"type":', '"type":"x.y.z","type":', 1), "type"),
	):
		with pytest.raises(InvalidEnvelope) as caught:
			Envelope.from_json(twice)
		assert f"the key '{key}' appears twice in one object" in str(caught.value)
	# The same key in two objects is no repeat.
	assert Envelope.from_json(body.replace('"qty":1', '"qty":{"qty":1}')).data.payload == {"qty": {"qty": 1}}


def test_a_lone_surrogate_escape_is_no_event_and_a_pair_is_one_character():
	body = make_envelope("Sales Order", "SO-1", note="x").to_json()
	for lone in ("\\ud800", "a\\uDC00b"):
		with pytest.raises(InvalidEnvelope) as caught:
			Envelope.from_json(body.replace('"note":"x"', f'"note":"{lone}"').encode())
		assert "lone surrogate escape" in str(caught.value)
	paired = Envelope.from_json(body.replace('"note":"x"', '"note":"\\ud83d\\ude00"'))
	assert paired.data.payload == {"note": "\U0001f600"}


def test_rfc_3339_is_told_apart_from_the_rest_of_iso_8601():
	for good in ("2026-11-27T14:00:00Z", "2026-11-27t14:00:00.123456z", "2026-11-27T14:00:00-05:30"):
		assert is_rfc3339(good), good
	for bad in (
		"20261127T140000Z",  # basic format
		"2026-W48-5T14:00:00Z",  # week date
		"2026-11-27T14:00:00+0100",  # offset without its colon
		"2026-11-27T14:00:00",  # no offset
		"2026-02-30T00:00:00Z",  # no such day
		"2026-11-27 14:00:00Z",
	):
		assert not is_rfc3339(bad), bad
