"""Webhook delivery against a real HTTP receiver that fails on purpose; signatures checked with
the official ``standardwebhooks`` library (the address guard: test_delivery_webhook_addresses)."""

import base64
import datetime as dt
import email.utils
import json
import socket
import threading

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cauldron_fabric.core import cloudevents as ce
from cauldron_fabric.core.delivery.destinations import WebhookDestination, parse_address
from cauldron_fabric.core.delivery.records import delivery_id
from cauldron_fabric.core.delivery.signing import generate_secret, secret_key, signature_headers
from cauldron_fabric.core.delivery.transform import BINARY, compile_transform
from cauldron_fabric.core.delivery.webhook import WebhookSender, WebhookTarget, parse_retry_after
from cauldron_fabric.core.delivery.webhook_headers import header_pairs
from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.testing.http_receiver import Reply
from cauldron_fabric.testing.kafka_broker import free_port
from conftest import BODY, LOOPBACK, make_envelope


def test_signature_verifies_with_the_standardwebhooks_library(receiver, sender):
	secret = generate_secret()
	outcome = sender.send(WebhookTarget(receiver.url(), secret=secret), "evt-1", BODY)
	assert outcome.ok and outcome.status_code == 200 and outcome.latency_ms > 0
	(request,) = receiver.on("/hook")
	assert request.headers["webhook-id"] == "evt-1" and request.body == BODY
	assert Webhook(secret).verify(request.body, request.headers) == json.loads(BODY)
	with pytest.raises(WebhookVerificationError):
		Webhook(generate_secret()).verify(request.body, request.headers)
	tampered = request.body.replace(b"1200", b"9999")
	with pytest.raises(WebhookVerificationError):
		Webhook(secret).verify(tampered, request.headers)


def test_two_secrets_sign_twice_so_receivers_can_rotate():
	old, new = generate_secret(), generate_secret()
	headers = signature_headers(f"{old} {new}", "evt-2", BODY)
	assert len(headers["webhook-signature"].split()) == 2
	for secret in (old, new):
		assert Webhook(secret).verify(BODY, headers)["id"] == "evt-1"


def test_secrets_must_be_whsec_base64_and_long_enough():
	assert len(secret_key(generate_secret())) == 32
	with pytest.raises(ConfigurationError, match="not base64"):
		secret_key("whsec_not*base64!")
	with pytest.raises(ConfigurationError, match="too short"):
		secret_key("whsec_c2hvcnQ=")


def test_500_retries_and_the_retry_carries_the_same_webhook_id(receiver, sender):
	receiver.reply("/hook", Reply(500, b"boom"))
	target = WebhookTarget(receiver.url(), secret=generate_secret())
	first = sender.send(target, "evt-3", BODY)
	second = sender.send(target, "evt-3", BODY)
	assert (first.ok, first.retryable, first.status_code, first.response_excerpt) == (
		False,
		True,
		500,
		"boom",
	)
	assert second.ok and second.status_code == 200
	assert [r.headers["webhook-id"] for r in receiver.on("/hook")] == ["evt-3", "evt-3"]


def test_410_and_other_4xx_are_permanent(receiver, sender):
	receiver.reply("/hook", Reply(410, b"gone"), Reply(400, b"bad"))
	for code in (410, 400):
		outcome = sender.send(WebhookTarget(receiver.url()), "evt-4", BODY)
		assert (outcome.ok, outcome.retryable, outcome.status_code) == (False, False, code)
		assert "not retried" in outcome.error


MARKUP = '<img src=x onerror="alert(document.cookie)">'


@pytest.mark.parametrize(
	"reply",
	[
		Reply(503, reason=MARKUP),
		Reply(404, reason=MARKUP),
		Reply(302, headers=(("Location", MARKUP),)),
	],
)
def test_a_receivers_markup_never_reaches_the_error_desk_shows(receiver, sender, reply):
	# The error is kept as the delivery's last_error, which Desk's form renders as HTML: the
	# receiver's reason phrase or Location would run in the browser of the admin opening it.
	receiver.reply("/hook", reply)
	outcome = sender.send(WebhookTarget(receiver.url()), "evt-markup", BODY)
	assert not outcome.ok and outcome.status_code == reply.status
	assert "<" not in outcome.error and ">" not in outcome.error, outcome.error
	assert "img src=x" in outcome.error, "the receiver's answer is still told"


def test_markup_in_a_broken_status_line_never_reaches_the_error(sender):
	# A status line that is not HTTP makes the client's error quote it.
	server = socket.create_server(("127.0.0.1", 0))
	threading.Thread(target=_answer_once, args=(server, f"HTTP/1.1 {MARKUP}\r\n\r\n"), daemon=True).start()
	outcome = sender.send(WebhookTarget(f"http://127.0.0.1:{server.getsockname()[1]}/hook"), "evt-x", BODY)
	server.close()
	assert not outcome.ok and "<" not in outcome.error and ">" not in outcome.error, outcome.error


def _answer_once(server, answer: str) -> None:
	connection, _ = server.accept()
	connection.recv(65536)
	connection.sendall(answer.encode())
	connection.close()


@pytest.mark.parametrize("code", [408, 429, 502, 503])
def test_408_429_and_5xx_retry(receiver, sender, code):
	receiver.reply("/hook", Reply(code))
	outcome = sender.send(WebhookTarget(receiver.url()), "evt-5", BODY)
	assert (outcome.ok, outcome.retryable, outcome.status_code) == (False, True, code)


def test_retry_after_in_seconds_and_as_http_date_is_respected_and_capped(receiver):
	sender = WebhookSender(LOOPBACK, max_retry_after=600)
	soon = email.utils.format_datetime(
		dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=90), usegmt=True
	)
	receiver.reply(
		"/hook",
		Reply(429, headers=(("Retry-After", "7"),)),
		Reply(503, headers=(("Retry-After", soon),)),
		Reply(429, headers=(("Retry-After", "86400"),)),
	)
	waits = [sender.send(WebhookTarget(receiver.url()), "evt-6", BODY).retry_after for _ in range(3)]
	assert waits[0] == 7 and 80 <= waits[1] <= 91 and waits[2] == 600
	sender.close()


def test_a_retry_after_that_is_no_delay_or_date_is_ignored_not_a_failed_sender(receiver, sender):
	# "²" passes str.isdigit() but not float(); a date in year 10^20 overflows: either used to
	# escape send() and the attempt was recorded as a crashed destination, not as the 503.
	huge_year = "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"
	receiver.reply("/hook", Reply(503, headers=(("Retry-After", "²"),)))
	receiver.reply("/hook", Reply(503, headers=(("Retry-After", huge_year),)))
	for _ in range(2):
		outcome = sender.send(WebhookTarget(receiver.url()), "evt-odd-retry-after", BODY)
		assert (outcome.ok, outcome.retryable, outcome.status_code) == (False, True, 503)
		assert outcome.retry_after is None and "answered 503" in outcome.error


def test_parse_retry_after_forms():
	now = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
	assert parse_retry_after("120", now) == 120
	assert parse_retry_after("Tue, 01 Jan 2030 00:01:00 GMT", now) == 60
	assert parse_retry_after("Mon, 31 Dec 2029 00:00:00 GMT", now) == 0
	assert parse_retry_after("soon", now) is None and parse_retry_after(None) is None


def test_connection_refused_is_retryable(sender):
	outcome = sender.send(WebhookTarget(f"http://127.0.0.1:{free_port()}/hook"), "evt-8", BODY)
	assert (outcome.ok, outcome.retryable) == (False, True) and "Could not reach" in outcome.error


def test_a_password_in_the_url_reaches_the_receiver_but_no_error_text(receiver, sender):
	receiver.reply("/hook", Reply(500), Reply(410))
	with_password = receiver.url().replace("http://", "http://hook:S3cret%21pw@")
	for outcome in (
		sender.send(WebhookTarget(with_password), "evt-8a", BODY),  # retried
		sender.send(WebhookTarget(with_password), "evt-8b", BODY),  # refused
		sender.send(WebhookTarget(f"http://hook:S3cret%21pw@127.0.0.1:{free_port()}/hook"), "evt-8c", BODY),
	):
		assert not outcome.ok and "hook:***@127.0.0.1:" in outcome.error
		assert "S3cret" not in outcome.error, outcome.error
	expected = "Basic " + base64.b64encode(b"hook:S3cret!pw").decode()
	assert [r.headers.get("authorization") for r in receiver.on("/hook")] == [expected, expected]
	with pytest.raises(ConfigurationError) as refused:
		WebhookTarget("ftp://hook:S3cret@example.com/x").validate()
	assert "S3cret" not in str(refused.value) and "hook:***@example.com" in str(refused.value)


def test_redirects_are_not_followed(receiver, sender):
	receiver.reply("/hook", Reply(302, headers=(("Location", "http://169.254.169.254/latest"),)))
	outcome = sender.send(WebhookTarget(receiver.url()), "evt-9", BODY)
	assert (outcome.ok, outcome.retryable, outcome.status_code) == (False, False, 302)
	assert "not followed" in outcome.error and len(receiver.requests) == 1


def test_the_response_body_is_recorded_truncated(receiver, sender):
	receiver.reply("/hook", Reply(500, b"x" * 200_000))
	outcome = sender.send(WebhookTarget(receiver.url()), "evt-10", BODY)
	assert outcome.response_excerpt == "x" * 1000 + "…"


def test_method_and_custom_headers_are_sent_but_cannot_forge_the_signature(receiver, sender):
	target = WebhookTarget(receiver.url(), method="PUT", headers=(("X-Api-Key", "k1"),))
	assert sender.send(target, "evt-11", BODY, extra_headers=(("ce-id", "evt-11"),)).ok
	(request,) = receiver.on("/hook")
	assert (
		request.method == "PUT"
		and request.headers["x-api-key"] == "k1"
		and request.headers["ce-id"] == "evt-11"
	)
	with pytest.raises(ConfigurationError, match="cannot be overridden"):
		WebhookTarget(receiver.url(), headers=(("webhook-signature", "v1,forged"),)).validate()


@pytest.mark.parametrize("name", ["webhook-signature", "Webhook-Timestamp", "WEBHOOK-ID"])
def test_the_sender_itself_never_lets_a_header_row_pass_for_a_signature_header(receiver, sender, name):
	# validate() refuses such rows on save and on load; a target built without it (core callers)
	# and without a secret sent a row's "webhook-signature" as if the fabric had signed the event.
	outcome = sender.send(WebhookTarget(receiver.url(), headers=((name, "v1,forged"),)), "evt-14", BODY)
	assert not outcome.ok and not outcome.retryable and "set by the fabric" in outcome.error
	assert receiver.on("/hook") == []


@pytest.mark.parametrize(
	"header, problem",
	[
		(("X Api Key", "k1"), "not a valid HTTP header name"),
		(("X-Api-Key:", "k1"), "not a valid HTTP header name"),
		(("X-Api-Key", "k1\r\nX-Injected: 1"), "line break"),
	],
)
def test_a_header_that_would_break_the_request_is_refused(receiver, sender, header, problem):
	# Sent, a name with a space ended the receiver's headers there, so it never saw the signature
	# (and took the request); a value with a line break failed every attempt as "Could not reach".
	target = WebhookTarget(receiver.url(), headers=(header,), secret=generate_secret())
	with pytest.raises(ConfigurationError, match=problem) as refused:
		target.validate()
	assert "k1" not in str(refused.value), "a header value may be a secret"


@pytest.mark.parametrize(
	"name, value",
	[
		("Transfer-Encoding", "chunked"),
		("Connection", "close"),
		("Keep-Alive", "timeout=5"),
		("Upgrade", "h2c"),
		("TE", "trailers"),
		("Trailer", "X-Sum"),
		("Expect", "100-continue"),
		("Proxy-Connection", "keep-alive"),
	],
)
def test_a_hop_by_hop_header_that_changes_how_the_request_is_framed_is_refused(receiver, sender, name, value):
	# Sent, Transfer-Encoding: chunked went out beside the Content-Length of a body that is not
	# chunked (RFC 9112 6.3 forbids both): a receiver honouring it reads the JSON as a chunk size.
	# The others belong to one connection, not to the event, and proxies drop or act on them.
	if name == "Transfer-Encoding":
		sender.send(WebhookTarget(receiver.url(), headers=((name, value),)), "evt-framing", BODY)
		(request,) = receiver.on("/hook")
		assert "content-length" in request.headers and request.headers["transfer-encoding"] == value
	with pytest.raises(ConfigurationError, match="controls the HTTP connection"):
		WebhookTarget(receiver.url(), headers=((name, value),)).validate()


def test_blanks_around_a_header_value_are_not_sent(receiver, sender):
	# As a subscription's header rows are read (header_pairs): requests refused the blank, and
	# its error, which quoted the value (a credential), became the delivery's last error.
	target = WebhookTarget(receiver.url(), headers=header_pairs([("X-Api-Key", " k1 ")]))
	assert sender.send(target, "evt-12", BODY).ok
	(request,) = receiver.on("/hook")
	assert request.headers["x-api-key"] == "k1"


def test_cloudevent_attributes_outside_latin_1_reach_the_receiver_percent_encoded(receiver, sender):
	# requests refused a ce-subject such as "ToDo/漢字" (UnicodeEncodeError), which escaped send()
	# and crashed the delivery; the HTTP binding percent-encodes such values (spec 3.1.3.2).
	envelope = make_envelope("ToDo", 'T-漢字 "100%"', "updated")
	payload = compile_transform(BINARY).render(envelope)
	destination = WebhookDestination(sender, WebhookTarget(receiver.url(), secret=generate_secret()))
	assert destination.deliver(envelope, payload, delivery_id(envelope.id, "binary")).ok
	(request,) = receiver.on("/hook")
	event = ce_http.from_binary(ce_http.HTTPMessage(request.headers, request.body), JSONFormat())
	assert event.get_subject() == 'ToDo/T-漢字 "100%"'
	assert event.get_extension("correlationid") == envelope.metadata.correlation_id
	assert ce.from_http(request.headers, request.body) == envelope


def test_a_header_requests_cannot_encode_is_a_failed_attempt_not_a_crash(receiver, sender):
	# A header saved before values were checked, or set by code: http.client raises
	# UnicodeEncodeError, which is no RequestException.
	target = WebhookTarget(receiver.url(), headers=(("X-Team", "Café ☕"),))
	outcome = sender.send(target, "evt-13", BODY)
	assert not outcome.ok and not outcome.retryable and "X-Team" not in (outcome.error or "")
	assert "could not be sent" in outcome.error and receiver.on("/hook") == []


@pytest.mark.parametrize(
	"target, problem",
	[
		(WebhookTarget("ftp://example.com/x"), "http:// or https://"),
		(WebhookTarget("https://example.com/x", method="GET"), "not allowed"),
		(WebhookTarget("https://example.com/x", timeout=0), "more than 0 and at most 300"),
		(WebhookTarget("https://example.com:99999/x"), "invalid port"),
		(WebhookTarget("https://example.com/x", secret="whsec_???"), "not base64"),
	],
)
def test_webhook_settings_are_checked(target, problem):
	with pytest.raises(ConfigurationError, match=problem):
		target.validate()


@pytest.mark.parametrize("url", ["https://[::1/hook", "http://[example.com]/x", "//[user:pw"])
def test_a_malformed_url_is_refused_as_a_destination_and_as_a_webhook(url):
	with pytest.raises(ConfigurationError, match="not a well-formed URL"):
		parse_address(url)
	with pytest.raises(ConfigurationError, match="not a well-formed URL"):
		WebhookTarget(url).validate()
