"""Webhook delivery against a real HTTP receiver that fails on purpose; signatures checked with
the official ``standardwebhooks`` library; the SSRF guard and DNS pinning."""

import base64
import datetime as dt
import email.utils
import ipaddress
import json
import socket
import ssl
import subprocess
import threading

import pytest
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cauldron_fabric.core import cloudevents as ce
from cauldron_fabric.core.delivery.addresses import AddressPolicy, AddressRefused, refusal_reason
from cauldron_fabric.core.delivery.destinations import WebhookDestination, parse_address
from cauldron_fabric.core.delivery.records import delivery_id
from cauldron_fabric.core.delivery.signing import generate_secret, secret_key, signature_headers
from cauldron_fabric.core.delivery.transform import BINARY, compile_transform
from cauldron_fabric.core.delivery.webhook import (
	WebhookSender,
	WebhookTarget,
	header_pairs,
	parse_retry_after,
)
from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.testing.http_receiver import Receiver, Reply
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


@pytest.mark.parametrize(
	"address, reason",
	[
		("127.0.0.1", "loopback"),
		("10.1.2.3", "private"),
		("172.16.0.9", "private"),
		("192.168.1.1", "private"),
		("169.254.169.254", "metadata"),
		("169.254.10.10", "link-local"),
		("100.64.0.1", "not publicly routable"),
		("100.100.100.200", "metadata"),
		("224.0.0.1", "multicast"),
		("0.0.0.0", "unspecified"),
		("240.0.0.1", "reserved"),
		("::1", "loopback"),
		("fe80::1", "link-local"),
		("fc00::1", "private"),
		("fec0::1", "site-local"),
		("fd00:ec2::254", "metadata"),
		("ff02::1", "multicast"),
		("::ffff:127.0.0.1", "loopback address (embedded"),
		("::ffff:10.0.0.1", "private address (embedded"),
		("2002:7f00:1::1", "loopback address (embedded"),
		("64:ff9b::a00:1", "private address (embedded"),
	],
)
def test_non_public_addresses_are_refused(address, reason):
	assert reason in refusal_reason(ipaddress.ip_address(address))
	with pytest.raises(AddressRefused, match="allow-list"):
		AddressPolicy().resolve(address, 443)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass_the_guard(address):
	assert refusal_reason(ipaddress.ip_address(address)) is None
	assert AddressPolicy().resolve(address, 443) == address.removeprefix("::ffff:")


def test_a_name_resolving_to_any_private_address_is_refused():
	resolver = {"mixed.example": ["93.184.216.34", "10.0.0.5"], "public.example": ["93.184.216.34"]}
	policy = AddressPolicy(resolver=lambda host, port: resolver[host])
	with pytest.raises(AddressRefused, match=r"10\.0\.0\.5, a private address"):
		policy.resolve("mixed.example", 443)
	assert policy.resolve("public.example", 443) == "93.184.216.34"
	with pytest.raises(AddressRefused, match="metadata endpoint"):
		policy.resolve("metadata.google.internal", 80)


def test_only_an_entry_naming_a_metadata_endpoint_itself_opens_it():
	# The metadata endpoint hands out the server's credentials (with a custom header such as
	# Metadata-Flavor: Google): a .internal entry for the admin's receivers, or a link-local
	# network, must not open it on the side.
	names = {"metadata.google.internal": ["169.254.169.254"], "n8n.internal": ["10.0.0.5"]}
	policy = AddressPolicy.from_allow_list([".internal", "169.254.0.0/16"], resolver=lambda h, p: names[h])
	assert policy.resolve("n8n.internal", 80) == "10.0.0.5"
	assert policy.resolve("169.254.10.10", 80) == "169.254.10.10"
	for host in ("metadata.google.internal", "169.254.169.254", "::ffff:169.254.169.254"):
		with pytest.raises(AddressRefused, match="metadata"):
			policy.resolve(host, 80)
	named = AddressPolicy.from_allow_list(
		["metadata.google.internal", "169.254.169.254/32"], resolver=lambda h, p: names[h]
	)
	assert named.resolve("metadata.google.internal", 80) == "169.254.169.254"
	assert named.resolve("169.254.169.254", 80) == "169.254.169.254"


def test_the_allow_list_takes_networks_and_host_names():
	policy = AddressPolicy.from_allow_list(["127.0.0.0/8", "n8n.internal", ".corp.example", " "])
	assert policy.resolve("127.0.0.5", 80) == "127.0.0.5"
	assert policy.resolve("::ffff:127.0.0.1", 80) == "127.0.0.1"
	with pytest.raises(AddressRefused):
		policy.resolve("10.0.0.1", 80)
	assert policy.allows_host("n8n.internal") and policy.allows_host("hooks.corp.example")
	assert not policy.allows_host("n8n.internal.evil.example")
	with pytest.raises(ConfigurationError, match="neither a network nor a host name"):
		AddressPolicy.from_allow_list(["10.0.0.0/33x"])


def test_loopback_receivers_are_refused_without_the_allow_list(receiver):
	sender = WebhookSender()
	for url in (receiver.url(), receiver.url(host="localhost")):
		outcome = sender.send(WebhookTarget(url), "evt-12", BODY)
		assert (outcome.ok, outcome.retryable) == (False, False) and "loopback" in outcome.error
	assert receiver.requests == []
	sender.close()


def test_a_backslash_cannot_send_the_request_to_another_host_than_the_checked_one(receiver):
	# Python's urlsplit reads public.example as the host of this URL; urllib3, which makes
	# the connection, ends the authority at the backslash and would dial 127.0.0.1.
	url = f"http://127.0.0.1:{receiver.port}\\@public.example/hook"
	sender = WebhookSender(AddressPolicy(resolver=lambda host, port: ["93.184.216.34"]))
	try:
		outcome = sender.send(WebhookTarget(url, timeout=2), "evt-backslash", BODY)
	finally:
		sender.close()
	assert receiver.requests == []
	assert (outcome.ok, outcome.retryable) == (False, False) and "backslash" in outcome.error
	with pytest.raises(ConfigurationError, match="backslash"):
		WebhookTarget(url).validate()


def test_the_request_goes_to_the_checked_address_with_the_original_host_header(receiver):
	# receiver.test exists in no DNS: the request can only arrive through the pinned address.
	policy = AddressPolicy.from_allow_list(["127.0.0.0/8"], resolver=lambda host, port: ["127.0.0.1"])
	sender = WebhookSender(policy)
	assert sender.send(WebhookTarget(receiver.url(host="receiver.test")), "evt-13", BODY).ok
	assert receiver.requests[0].headers["host"] == f"receiver.test:{receiver.port}"
	sender.close()


def test_https_to_a_pinned_address_verifies_the_certificate_of_the_host_name(tmp_path):
	key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
	command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=receiver.test"
	command += " -addext subjectAltName=DNS:receiver.test"
	subprocess.run([*command.split(), "-keyout", key, "-out", cert], check=True, capture_output=True)
	context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	context.load_cert_chain(cert, key)
	server = Receiver().start(context)
	try:
		resolver = lambda host, port: ["127.0.0.1"]  # noqa: E731
		policy = AddressPolicy.from_allow_list(["127.0.0.0/8"], resolver=resolver)
		sender = WebhookSender(policy, verify=str(cert))
		url = server.url(host="receiver.test", scheme="https")
		assert sender.send(WebhookTarget(url), "evt-14", BODY).ok
		other = AddressPolicy.from_allow_list(["127.0.0.0/8", "other.test"], resolver=resolver)
		mismatch = WebhookSender(other, verify=str(cert)).send(
			WebhookTarget(server.url(host="other.test", scheme="https")), "evt-14", BODY
		)
		assert not mismatch.ok and mismatch.retryable and "other.test" in mismatch.error
		assert len(server.requests) == 1
	finally:
		server.stop()
