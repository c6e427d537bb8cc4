"""Payload forms, checked with the official CloudEvents SDK, and save-time validation of subscriptions."""

import json
import subprocess
import sys
import tracemalloc

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat

from cauldron_fabric.core import cloudevents as ce
from cauldron_fabric.core.delivery.subscription import SubscriptionInvalid, build_subscription
from cauldron_fabric.core.delivery.transform import RenderError, TransformError, compile_transform
from conftest import make_envelope


@pytest.fixture
def envelope():
	return make_envelope(
		"Sales Invoice", "SINV-7", "submitted", grand_total=1200.5, customer="ACME", items=[{"qty": 2}]
	)


def test_envelope_form_is_the_seed_envelope_and_a_binary_cloudevent(envelope):
	payload = compile_transform("envelope").render(envelope)
	assert json.loads(payload.body) == envelope.to_dict() and payload.content_type == "application/json"
	headers = dict(payload.headers("ce-"))
	event = ce_http.from_binary(ce_http.HTTPMessage(headers, payload.body), JSONFormat())
	assert event.get_id() == envelope.id and event.get_data() == envelope.to_dict()
	compact = dict(payload.headers("ce-", compact=True))
	assert sorted(compact) == ["ce-id", "ce-source", "ce-specversion", "ce-type", "content-type"]
	assert (
		ce_http.from_binary(ce_http.HTTPMessage(compact, payload.body), JSONFormat()).get_type()
		== envelope.type
	)


def test_structured_form_is_accepted_by_the_sdk_and_round_trips(envelope):
	payload = compile_transform("cloudevents-structured").render(envelope)
	assert payload.content_type == "application/cloudevents+json" and payload.attributes == ()
	event = ce_http.from_structured(
		ce_http.HTTPMessage({"content-type": payload.content_type}, payload.body), JSONFormat()
	)
	assert event.get_type() == "sales_invoice.submitted"
	assert ce.from_structured(payload.body) == envelope


def test_binary_form_carries_the_data_object_and_round_trips(envelope):
	payload = compile_transform("cloudevents-binary").render(envelope)
	assert json.loads(payload.body)["payload"]["grand_total"] == 1200.5
	headers = dict(payload.headers("ce-"))
	event = ce_http.from_binary(ce_http.HTTPMessage(headers, payload.body), JSONFormat())
	assert event.get_extension("correlationid") == envelope.metadata.correlation_id
	assert ce.from_headers(payload.headers("ce_"), payload.body) == envelope


def test_a_jinja_template_renders_json_for_n8n(envelope):
	template = '{"invoice": {{ data.entityId | json }}, "total": {{ payload.grand_total }}, "who": {{ event.metadata.userId | json }}}'
	payload = compile_transform("template", template=template).render(envelope)
	assert json.loads(payload.body) == {"invoice": "SINV-7", "total": 1200.5, "who": "Administrator"}


def test_a_template_with_a_syntax_error_is_refused_on_save_with_its_line():
	with pytest.raises(TransformError, match="syntax error on line 2"):
		compile_transform("template", template='{\n"a": {{ payload.x }\n}')
	with pytest.raises(TransformError, match="empty"):
		compile_transform("template", template="  ")


@pytest.mark.parametrize(
	"template",
	[
		"{{ " + "(" * 1000 + "1" + ")" * 1000 + " }}",  # RecursionError in Jinja's parser
		"{{ " + "[" * 1000 + "1" + "]" * 1000 + " }}",
		"{% if 1 %}" * 150 + "x" + "{% endif %}" * 150,  # Python refuses the generated code
	],
)
def test_a_template_nested_too_deeply_to_compile_is_refused_on_save(template):
	with pytest.raises(TransformError, match="nests too deeply"):
		compile_transform("template", template=template)


def test_template_failures_for_one_event_are_permanent_and_explained(envelope):
	missing = compile_transform("template", template="{{ payload.no_such_field | json }}")
	with pytest.raises(RenderError, match="lacks") as caught:
		missing.render(envelope)
	assert not caught.value.retryable
	with pytest.raises(RenderError, match="invalid JSON"):
		compile_transform("template", template="{{ payload.customer }}").render(envelope)
	plain = compile_transform("template", template="Hello {{ payload.customer }}", content_type="text/plain")
	assert plain.render(envelope).body == b"Hello ACME"


def test_a_template_for_a_json_lines_receiver_is_not_checked_as_one_json_document(envelope):
	# Elasticsearch's _bulk, Loki and Splunk HEC take newline-delimited JSON
	# (application/x-ndjson): one document per line, which is no single JSON document.
	template = '{"index": {"_id": {{ id | json }}}}\n{"total": {{ payload.grand_total }}}\n'
	bulk = compile_transform("template", template=template, content_type="application/x-ndjson")
	body = bulk.render(envelope).body
	assert [json.loads(line) for line in body.splitlines()] == [
		{"index": {"_id": envelope.id}},
		{"total": 1200.5},
	]
	# A JSON media type (subtype json or a +json suffix) is still checked as one document.
	for content_type in ("application/json; charset=utf-8", "application/cloudevents+json"):
		with pytest.raises(RenderError, match="invalid JSON"):
			compile_transform("template", template=template, content_type=content_type).render(envelope)


@pytest.mark.parametrize(
	"template",
	[
		"{{ ''.__class__.__mro__ }}",
		"{{ payload.__class__.__init__.__globals__ }}",
		"{{ 'x' * 100000000 }}",
		"{{ 10 ** 100000 }}",
	],
)
def test_the_template_sandbox_refuses_escapes_and_huge_output(envelope, template):
	with pytest.raises(RenderError):
		compile_transform("template", template=template, content_type="text/plain").render(envelope)


RENDER_IN_A_CHILD = """
import sys
from cauldron_fabric.core.delivery.transform import RenderError, compile_transform
from cauldron_fabric.core.envelope import Envelope
transform = compile_transform("template", template=sys.argv[1], content_type="text/plain")
try:
	transform.render(Envelope.from_json(sys.stdin.read()))
except RenderError as exc:
	print(exc)
"""


@pytest.mark.parametrize(
	"template",
	[
		"{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
		"{% set r = range(100000) | list %}{% for i in r %}{% for j in r %}{% for k in r %}"
		"{% endfor %}{% endfor %}{% endfor %}",
		"{% macro f(n) %}{% if n %}{% set a = f(n - 1) %}{% set b = f(n - 1) %}{% endif %}{% endmacro %}"
		"{% set x = f(60) %}",
		"{% set r = range(100000) | list %}{% for i in [1] recursive %}{% if loop.depth < 4 %}"
		"{% set x = loop(r) %}{% endif %}{% endfor %}",
	],
)
def test_a_template_looping_without_output_is_stopped_not_left_running_for_hours(envelope, template):
	# The output limit never trips on loops that write nothing: 10**10 empty iterations held a
	# delivery worker for hours, its claim expired and the event went out twice. Rendered in a
	# child process so that, unstopped, the render is killed instead of hanging the suite.
	try:
		child = subprocess.run(
			[sys.executable, "-c", RENDER_IN_A_CHILD, template],
			input=envelope.to_json(),
			capture_output=True,
			text=True,
			timeout=30,
		)
	except subprocess.TimeoutExpired:
		pytest.fail("the template was still rendering after 30 s")
	assert child.stdout.startswith("The payload template took more than"), child.stdout + child.stderr


def test_a_template_looping_to_huge_output_stops_at_the_limit_not_after_building_it(envelope):
	# No single '*' is too large, but the loops would build 40 MB (a larger range, gigabytes)
	# before the output limit was checked: the worker's memory, not the limit, bounded it.
	template = "{% for i in range(40000) %}{{ 'x' * 1000 }}{% endfor %}"
	transform = compile_transform("template", template=template, content_type="text/plain")
	tracemalloc.start()
	try:
		with pytest.raises(RenderError, match=r"^The payload template produced more than 1000000 characters"):
			transform.render(envelope)
		_, peak = tracemalloc.get_traced_memory()
	finally:
		tracemalloc.stop()
	assert peak < 10_000_000


def test_a_field_selection_keeps_the_tree_or_uses_aliases(envelope):
	transform = compile_transform(
		"fields",
		fields=[
			"id",
			"data.payload.grand_total",
			"customer=payload.customer",
			"first_qty=payload.items.0.qty",
			"payload.nope",
		],
	)
	assert json.loads(transform.render(envelope).body) == {
		"id": envelope.id,
		"data": {"payload": {"grand_total": 1200.5, "nope": None}},
		"customer": "ACME",
		"first_qty": 2,
	}
	with pytest.raises(TransformError, match="unknown name 'grand_total'"):
		compile_transform("fields", fields=["grand_total"])
	with pytest.raises(TransformError, match="Unknown payload form"):
		compile_transform("xml")


def test_a_field_selection_through_a_list_index_keeps_a_list():
	envelope = make_envelope(
		"Sales Invoice", "SINV-8", "submitted", items=[{"item": "A", "qty": 1}, {"item": "B", "qty": 3}]
	)
	transform = compile_transform(
		"fields", fields=["payload.items.0.item", "payload.items.0.qty", "payload.items.2.item"]
	)
	# Like jq's setpath: the index keeps its place, the positions before it not selected are null.
	assert json.loads(transform.render(envelope).body) == {
		"data": {"payload": {"items": [{"item": "A", "qty": 1}, None, {"item": None}]}}
	}
	top = compile_transform("fields", fields=["payload.items.1"]).render(envelope)
	assert json.loads(top.body) == {"data": {"payload": {"items": [None, {"item": "B", "qty": 3}]}}}


def test_an_index_too_large_to_keep_its_place_is_refused_unless_named():
	# In place, payload.items.99999999999 would pad a list with that many nulls on every event.
	with pytest.raises(TransformError, match="index 99999999999 is too large"):
		compile_transform("fields", fields=["payload.items.99999999999"])
	named = compile_transform("fields", fields=["last=payload.items.99999999999"])
	assert json.loads(named.render(make_envelope(items=[1])).body) == {"last": None}


def test_build_subscription_lists_every_problem_at_once():
	with pytest.raises(SubscriptionInvalid) as caught:
		build_subscription(
			"Broken",
			"ftp://example.com",
			event_types=["sales_*"],
			condition="payload.total >",
			payload_form="template",
			template="{{ oops",
			max_attempts=0,
		)
	problems = caught.value.problems
	assert [p.split(":")[0] for p in problems] == ["Events", "Payload", "Destination", "Retries"]
	assert "Broken" in str(caught.value)


def test_build_subscription_compiles_a_webhook_subscription():
	subscription = build_subscription(
		"n8n invoices",
		"https://n8n.example.com/webhook/abc",
		event_types=["sales_invoice.submitted"],
		condition="payload.grand_total > 1000",
		headers={"X-Tenant": "t1"},
		timeout=5,
		rate_limit=10,
	)
	assert (
		subscription.webhook.url == "https://n8n.example.com/webhook/abc"
		and subscription.webhook.headers == (("X-Tenant", "t1"),)
	)
	assert subscription.burst == 10 and subscription.policy.max_attempts == 8
	with pytest.raises(SubscriptionInvalid, match=r"Webhook: .*secret"):
		build_subscription("s", "https://x.example/h", event_types=["*"], secret="whsec_short")
