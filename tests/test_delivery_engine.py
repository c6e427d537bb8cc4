"""The delivery worker end to end: real HTTP receiver, real Kafka-protocol broker, real RabbitMQ."""

import datetime as dt
import itertools
import json
import logging
import re
import sys
import threading
import time

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from delivery_fabric import FAST, Fabric
from standardwebhooks.webhooks import Webhook

from cauldron_fabric.core.delivery.records import (
	DEAD,
	DELIVERED,
	PENDING,
	RETRYING,
	delivery_id,
)
from cauldron_fabric.core.delivery.signing import generate_secret
from cauldron_fabric.core.delivery.subscription import (
	SubscriptionInvalid,
	build_broken_subscription,
	build_subscription,
)
from cauldron_fabric.core.delivery.transform import BINARY, ENVELOPE, STRUCTURED
from cauldron_fabric.core.errors import PermanentError
from cauldron_fabric.testing.http_receiver import Receiver, Reply, SlowReader
from conftest import make_envelope


@pytest.fixture
def receiver():
	server = Receiver().start()
	yield server
	server.stop()


def webhook(name, receiver, path="/hook", **options):
	settings = {"event_types": ["*"], **FAST, **options}
	return build_subscription(name, receiver.url(path), **settings)


def until_settled(worker, seconds=10):
	deadline = time.monotonic() + seconds
	while time.monotonic() < deadline:
		worker.deliver_due()
		counts = worker.store.status_counts()
		if counts.get(PENDING, 0) == 0:
			return counts
		time.sleep(0.05)
	return worker.store.status_counts()


def test_500_then_200_is_retried_after_the_backoff_and_delivered(receiver):
	receiver.reply("/hook", Reply(500, b"database down"))
	secret = generate_secret()
	fabric = Fabric([webhook("n8n", receiver, secret=secret)])
	envelope = make_envelope("Sales Invoice", "SINV-1", "submitted", grand_total=99)
	assert fabric.emit(envelope) == 1
	worker = fabric.worker()
	first = worker.deliver_due()
	assert (first.claimed, first.retrying) == (1, 1)
	assert worker.deliver_due().claimed == 0, "the retry must wait for its backoff"
	time.sleep(0.25)
	assert worker.deliver_due().delivered == 1
	(row,) = fabric.rows()
	assert (row.status, row.attempts, row.last_status_code) == (DELIVERED, 2, 200)
	assert [(h["status"], h.get("status_code")) for h in row.history] == [(RETRYING, 500), (DELIVERED, 200)]
	assert row.history[0]["response"] == "database down" and row.history[0]["latency_ms"] > 0
	requests = receiver.on("/hook")
	assert [r.headers["webhook-id"] for r in requests] == [delivery_id(envelope.id, "n8n")] * 2
	assert Webhook(secret).verify(requests[1].body, requests[1].headers) == envelope.to_dict()
	event = ce_http.from_binary(ce_http.HTTPMessage(requests[1].headers, requests[1].body), JSONFormat())
	assert event.get_id() == envelope.id and event.get_data() == envelope.to_dict()
	fabric.close()


def test_one_event_through_two_subscriptions_to_one_receiver_carries_a_webhook_id_per_delivery(receiver):
	# Standard Webhooks receivers drop a message whose webhook-id they have seen: with the event
	# id as webhook-id, the second subscription's request was dropped as the first one's duplicate.
	receiver.reply("/hook", Reply(503))
	secret = generate_secret()
	fabric = Fabric([webhook("full", receiver, secret=secret), webhook("summary", receiver, secret=secret)])
	envelope = make_envelope("Sales Invoice", "SINV-2", "submitted")
	assert fabric.emit(envelope) == 2
	assert until_settled(fabric.worker()) == {DELIVERED: 2}
	requests = receiver.on("/hook")
	ids = [r.headers["webhook-id"] for r in requests]
	assert len(requests) == 3 and ids[0] == ids[2] != ids[1], "a retry keeps its delivery's id"
	assert set(ids) == {delivery_id(envelope.id, "full"), delivery_id(envelope.id, "summary")}
	for request in requests:
		assert request.headers["ce-id"] == envelope.id, "the event id stays in the ce-id header"
		assert Webhook(secret).verify(request.body, request.headers) == envelope.to_dict()
	fabric.close()


def test_410_goes_straight_to_the_dead_letters_saying_the_subscription_was_disabled(receiver):
	receiver.reply("/hook", Reply(410, b"no such workflow"))
	fabric = Fabric([webhook("gone", receiver)])
	fabric.emit(make_envelope())
	worker = fabric.worker()
	assert worker.deliver_due().dead == 1
	(row,) = fabric.rows()
	assert (row.status, row.attempts, row.last_status_code) == (
		DEAD,
		1,
		410,
	) and "answered 410 Gone, so the receiver says this URL is gone for good" in row.last_error
	assert "Subscription 'gone' was disabled at" in row.last_error
	assert "enable the subscription, then retry its dead letters" in row.last_error
	assert worker.store.requeue([row.seq]) == 1
	assert worker.deliver_due().delivered == 1
	assert [h["status"] for h in fabric.rows()[0].history] == [DEAD, DELIVERED]
	fabric.close()


def test_429_waits_as_long_as_retry_after_says(receiver):
	receiver.reply("/hook", Reply(429, headers=(("Retry-After", "30"),)))
	fabric = Fabric([webhook("throttled", receiver)])
	fabric.emit(make_envelope())
	before = dt.datetime.now()
	fabric.worker().deliver_due()
	(row,) = fabric.rows()
	assert row.status == PENDING and 29 <= (row.next_attempt_at - before).total_seconds() <= 31
	fabric.close()


def test_408_and_timeouts_retry_until_attempts_run_out(receiver):
	receiver.reply("/hook", Reply(408))
	receiver.default = Reply(200, delay=0.5)
	fabric = Fabric([webhook("slow", receiver, timeout=0.2, max_attempts=3)])
	fabric.emit(make_envelope())
	counts = until_settled(fabric.worker())
	assert counts == {DEAD: 1}
	(row,) = fabric.rows()
	assert [h.get("status_code") for h in row.history] == [408, None, None]
	assert (
		row.last_error.startswith("Gave up after 3 attempt(s)")
		and "did not answer within 0.2 s" in row.last_error
	)
	fabric.close()


def test_a_receiver_reading_the_body_slowly_ends_the_attempt_at_its_timeout_and_is_retried():
	server = SlowReader(slow=1)
	subscription = build_subscription("slow-reader", server.url(), event_types=["*"], timeout=0.5, **FAST)
	fabric = Fabric([subscription])
	fabric.emit(make_envelope(blob="x" * 8_000_000))  # more than the socket buffers hold
	worker = fabric.worker()
	started = time.monotonic()
	assert worker.deliver_due().retrying == 1
	assert time.monotonic() - started < 1.5
	assert until_settled(worker) == {DELIVERED: 1} and server.answered == 1
	(row,) = fabric.rows()
	assert [h["status"] for h in row.history] == [RETRYING, DELIVERED]
	assert "did not take the whole request within 0.5 s" in row.history[0]["error"]
	server.stop()
	fabric.close()


def test_a_slow_receiver_never_gets_overlapping_or_early_duplicates(receiver):
	receiver.default = Reply(200, delay=0.6)
	fabric = Fabric([webhook("slow", receiver, timeout=0.25, max_attempts=4, initial_delay=0.3)])
	fabric.emit(make_envelope())
	stop = threading.Event()
	workers = [fabric.worker() for _ in range(3)]
	threads = [
		threading.Thread(target=w.run, args=(stop.is_set,), kwargs={"idle_wait": 0.01}) for w in workers
	]
	for thread in threads:
		thread.start()
	time.sleep(3.5)
	stop.set()
	for thread in threads:
		thread.join()
	starts = [r.started for r in receiver.on("/hook")]
	assert len(starts) == 4, "exactly one request per allowed attempt, however many workers poll"
	gaps = [b - a for a, b in itertools.pairwise(starts)]
	assert all(gap >= 0.25 + 0.3 * 0.9 for gap in gaps), gaps
	assert fabric.rows()[0].status == DEAD
	fabric.close()


def test_per_entity_order_holds_while_an_earlier_event_is_retried(receiver):
	receiver.reply("/ordered", Reply(503))
	fabric = Fabric([webhook("ordered", receiver, "/ordered", ordered=True)])
	events = [make_envelope("ToDo", "T-1", "updated", n=n) for n in range(3)]
	fabric.emit(*events)
	assert until_settled(fabric.worker()) == {DELIVERED: 3}
	bodies = [json.loads(r.body)["data"]["payload"]["n"] for r in receiver.on("/ordered")]
	assert bodies == [0, 0, 1, 2]
	fabric.close()


def test_the_rate_limit_defers_without_spending_attempts(receiver):
	fabric = Fabric([webhook("limited", receiver, rate_limit=20, burst=2)])
	fabric.emit(*[make_envelope("ToDo", f"T-{n}") for n in range(6)])
	report = fabric.worker().deliver_due()
	assert (report.delivered, report.deferred) == (2, 4)
	assert sorted(row.attempts for row in fabric.rows()) == [0, 0, 0, 0, 1, 1]
	assert until_settled(fabric.worker()) == {DELIVERED: 6}
	assert len(receiver.requests) == 6
	fabric.close()


def test_handlers_filters_and_broken_templates(receiver):
	calls = []

	def handler(envelope, payload):
		calls.append(envelope.data.payload["grand_total"])
		if envelope.data.payload["grand_total"] == 13:
			raise PermanentError("unlucky invoice")

	subscriptions = [
		build_subscription("big", "handler:accounts.handlers.on_invoice", event_types=["sales_invoice.submitted"],
			condition="payload.grand_total > 10", **FAST),
		build_subscription("unregistered", "handler:other_app.missing", event_types=["sales_invoice.*"], **FAST),
		build_subscription("template", receiver.url(), event_types=["**.submitted"], payload_form="template",
			template="{{ payload.customer | json }}", **FAST),
	]  # fmt: skip
	fabric = Fabric(subscriptions, handlers={"accounts.handlers.on_invoice": handler})
	fabric.emit(*[make_envelope("Sales Invoice", f"S-{t}", "submitted", grand_total=t) for t in (5, 13, 50)])
	fabric.worker().deliver_due()
	by_name = {(row.subscription, row.event_id): row for row in fabric.rows()}
	assert sorted(calls) == [13, 50] and len(by_name) == 8
	statuses = sorted((name, row.status) for (name, _), row in by_name.items())
	assert (
		statuses
		== [("big", DEAD), ("big", DELIVERED)] + [("template", DEAD)] * 3 + [("unregistered", PENDING)] * 3
	)
	unregistered = next(row for (name, _), row in by_name.items() if name == "unregistered")
	assert "No handler 'other_app.missing' is registered" in unregistered.last_error
	template = next(row for (name, _), row in by_name.items() if name == "template")
	assert "lacks" in template.last_error and receiver.requests == []
	fabric.close()


def test_a_handler_calling_sys_exit_is_a_failed_attempt_and_spares_the_batch(receiver):
	# SystemExit is no Exception: it escaped the engine with the batch's webhook already sent, the
	# batch was released unsettled and the worker process exited; the next worker sent it again.
	def exits(envelope, payload):
		sys.exit(2)  # a command-line tool's entry point called from a handler

	subscriptions = [
		build_subscription("exits", "handler:accounts.handlers.exits", event_types=["*"], **FAST),
		webhook("hook", receiver),
	]
	fabric = Fabric(subscriptions, handlers={"accounts.handlers.exits": exits})
	fabric.emit(make_envelope())
	fabric.worker().deliver_due()
	rows = {row.subscription: row for row in fabric.rows()}
	assert (rows["hook"].status, len(receiver.requests)) == (DELIVERED, 1)
	assert rows["exits"].status == PENDING and "raised SystemExit: 2" in rows["exits"].last_error
	fabric.close()


def test_a_handler_running_past_its_time_is_logged_and_left_to_finish(caplog):
	# A thread cannot be stopped safely (its transaction and whatever it started would be left
	# half done), so a handler has no timeout; an operator must still see which one holds the batch.
	release = threading.Event()
	handlers = {
		"accounts.handlers.slow": lambda envelope, payload: release.wait(5),
		"accounts.handlers.fast": print,
	}
	subscriptions = [
		build_subscription("slow-handler", "handler:accounts.handlers.slow", event_types=["*"], **FAST),
		build_subscription("fast-handler", "handler:accounts.handlers.fast", event_types=["*"], **FAST),
	]
	fabric = Fabric(subscriptions, handlers=handlers, overdue_after=0.2)
	envelope = make_envelope()
	fabric.emit(envelope)
	threading.Timer(0.7, release.set).start()
	with caplog.at_level(logging.WARNING, logger="cauldron_fabric.delivery"):
		assert fabric.worker().deliver_due().delivered == 2, "the slow handler is not stopped"
	messages = [r.getMessage() for r in caplog.records]
	running, finished = messages[:-1], messages[-1]
	assert running and all("has been running for" in m and "not stopped" in m for m in running)
	assert all(envelope.id in m and "'slow-handler' (handler:accounts.handlers.slow)" in m for m in messages)
	assert re.search(r"finished after 0\.[7-9] s\.$", finished), finished  # released after 0.7 s
	fabric.close()


def test_a_template_failing_in_any_way_dead_letters_its_event_and_spares_the_batch(receiver):
	# '%' formatting with a key the event lacks raises KeyError, which is no Jinja error: it
	# escaped the engine, the worker released the batch, and every cycle crashed on it again.
	subscriptions = [
		webhook("formatted", receiver, "/formatted", payload_form="template",
			content_type="text/plain", template="{{ 'Invoice %(customer)s' % payload }}"),
		webhook("plain", receiver, "/plain"),
	]  # fmt: skip
	fabric = Fabric(subscriptions)
	fabric.emit(make_envelope("Sales Invoice", "S-1", "submitted", grand_total=5))
	report = fabric.worker().deliver_due()
	assert (report.claimed, report.delivered, report.dead) == (2, 1, 1)
	dead = next(row for row in fabric.rows() if row.subscription == "formatted")
	assert dead.status == DEAD and "The payload template failed for this event" in dead.last_error
	assert "customer" in dead.last_error and receiver.on("/formatted") == []
	assert len(receiver.on("/plain")) == 1
	fabric.close()


def test_a_removed_or_disabled_subscription_parks_its_deliveries(receiver):
	enabled = webhook("s", receiver)
	fabric = Fabric([enabled])
	fabric.emit(make_envelope())
	fabric.subscriptions["s"] = build_subscription("s", receiver.url(), event_types=["*"], enabled=False)
	fabric.worker().deliver_due()
	assert "is disabled" in fabric.rows()[0].last_error and fabric.rows()[0].status == DEAD
	fabric.close()


def test_a_subscription_that_no_longer_compiles_dead_letters_what_it_would_get(receiver):
	# A stored condition a later version refuses: the events of its types and DocTypes are kept.
	broken = build_broken_subscription(
		"b",
		"Events: bad escape.",
		event_types=["todo.*", "sales_*"],
		doctypes=["ToDo"],
		condition='a == "\\u00e"',
	)
	# The condition compiles but the destination no longer does: the condition still filters.
	filtered = build_broken_subscription(
		"f", "Destination: bad.", event_types=["*"], condition="payload.n == 1"
	)
	fabric = Fabric([broken, filtered])
	assert fabric.emit(make_envelope(n=1), make_envelope(n=2), make_envelope("Note")) == 3
	fabric.worker().deliver_due()
	rows = fabric.rows()
	assert [(r.subscription, r.status) for r in rows] == [("b", DEAD), ("f", DEAD), ("b", DEAD)]
	assert rows[0].last_error.startswith(
		"Subscription 'b' does not compile: Events: bad escape. Fix and save"
	)
	assert "content filter could not be applied" in rows[0].last_error
	assert "content filter" not in rows[1].last_error
	fabric.close()


@pytest.mark.parametrize(
	"form, header, problem",
	[
		(BINARY, "ce-causationid", "ce-causationid carries the CloudEvents attribute causationid"),
		(ENVELOPE, "CE-ID", "ce-id carries the CloudEvents attribute id"),
		(ENVELOPE, "Content-Type", "content type follows the payload form"),
	],
)
def test_a_header_row_the_sender_writes_for_the_payload_form_does_not_compile(form, header, problem):
	# An event without a causation id has no ce-causationid of its own: the row's value went out
	# as that event's CloudEvents attribute. A subscription stored with such a row loads broken.
	with pytest.raises(SubscriptionInvalid, match=f"Webhook: Header {header!r}: .*{problem}"):
		build_subscription(
			"s", "https://example.com/hook", event_types=["*"], payload_form=form, headers=[(header, "x")]
		)
	# Sent as written: the form writes no such header, or the attribute is the row's own.
	for form, header in ((STRUCTURED, "ce-id"), (ENVELOPE, "ce-time"), (BINARY, "ce-myext")):
		build_subscription(
			"s", "https://example.com/hook", event_types=["*"], payload_form=form, headers=[(header, "x")]
		)
