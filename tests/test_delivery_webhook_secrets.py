"""A receiver that repeats the request in its answer (an echo endpoint, a framework's error page
listing the request's headers) must not put a subscription's header values, stored encrypted,
into the delivery's record: more users read Event Deliveries and Dead Letters than may read them.
"""

from __future__ import annotations

import socket
import threading

import pytest

from cauldron_fabric.core.delivery.records import EXCERPT_LIMIT, HIDDEN
from cauldron_fabric.core.delivery.webhook import WebhookTarget
from conftest import BODY

TOKEN = "sk_live_4f9a8c7e6d5b4a39"


def echoing(status: bytes, padding: int = 0) -> tuple[str, socket.socket]:
	"""Answers one request with ``status``, whose reason phrase and body repeat the request's
	headers (with ``padding``, the body is that many bytes, then the Authorization value alone)."""
	server = socket.create_server(("127.0.0.1", 0))

	def serve():
		connection, _ = server.accept()
		with connection:
			head = b""
			while b"\r\n\r\n" not in head:
				head += connection.recv(65536)
			head = head.partition(b"\r\n\r\n")[0]
			authorization = next(
				line.split(b":", 1)[1].strip()
				for line in head.split(b"\r\n")
				if line.lower().startswith(b"authorization:")
			)
			body = b"x" * padding + authorization if padding else head
			connection.sendall(
				b"HTTP/1.1 %s (you sent %s)\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
				% (status, authorization, len(body), body)
			)

	threading.Thread(target=serve, daemon=True).start()
	return f"http://127.0.0.1:{server.getsockname()[1]}/hook", server


@pytest.mark.parametrize(
	"status, ok, retryable",
	[(b"200 OK", True, False), (b"500 Broken", False, True), (b"401 Unauthorized", False, False)],
)
def test_header_values_the_receiver_repeats_are_hidden_in_the_record(sender, status, ok, retryable):
	url, server = echoing(status)
	target = WebhookTarget(
		url, headers=(("Authorization", f"Bearer {TOKEN}"), ("X-Tenant", "acme")), timeout=5
	)
	outcome = sender.send(target, "e", BODY)
	server.close()
	assert (outcome.ok, outcome.retryable) == (ok, retryable), outcome.error
	recorded = f"{outcome.response_excerpt} {outcome.error or ''}"
	assert TOKEN not in recorded, recorded
	assert f"authorization: {HIDDEN}" in outcome.response_excerpt.lower(), outcome.response_excerpt
	assert "x-tenant: [hidden]" in outcome.response_excerpt.lower(), "every header value is stored encrypted"
	if not ok:
		assert f"(you sent {HIDDEN})" in outcome.error, outcome.error


def test_a_value_cut_by_the_excerpts_limit_leaves_no_part_of_it(sender):
	url, server = echoing(b"500 Broken", padding=EXCERPT_LIMIT - 14)
	target = WebhookTarget(url, headers=(("Authorization", f"Bearer {TOKEN}"),), timeout=5)
	outcome = sender.send(target, "e", BODY)
	server.close()
	# Cut at the limit first, the record would end "Bearer sk_liv".
	assert TOKEN[:6] not in outcome.response_excerpt, outcome.response_excerpt[-80:]
	assert HIDDEN in outcome.response_excerpt


def test_the_long_part_of_a_value_is_hidden_alone_too(sender):
	# A receiver may repeat the token without its scheme ("invalid token sk_live_…").
	target = WebhookTarget("http://127.0.0.1/hook", headers=(("Authorization", f"Bearer {TOKEN}"),))
	assert set(target.secret_values()) == {f"Bearer {TOKEN}", TOKEN}
	short = WebhookTarget("http://127.0.0.1/hook", headers=(("X-Flag", "1"),))
	assert short.secret_values() == [], "a one-character value would hide every digit 1 in the answer"
