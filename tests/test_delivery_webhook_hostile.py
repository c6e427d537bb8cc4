"""Webhook receivers that misbehave at the HTTP level: interim (1xx) answers before the real one,
a protocol switch, Retry-After values that would spend every attempt at once, TLS to a plain
port, resets, and what the delivery's error then says."""

import contextlib
import datetime as dt
import email.utils
import socket
import struct
import threading
import time

import pytest
from delivery_fabric import Fabric

from cauldron_fabric.core.delivery.policy import RetryPolicy
from cauldron_fabric.core.delivery.records import PENDING
from cauldron_fabric.core.delivery.subscription import build_subscription
from cauldron_fabric.core.delivery.webhook import WebhookTarget
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.testing.http_receiver import Receiver, Reply
from conftest import BODY, make_envelope


class RawReceiver:
	"""A keep-alive receiver on 127.0.0.1 writing, per request, the bytes its script gives.

	``answers`` holds one item per request in arrival order, whatever the connection. After a
	``101 Switching Protocols`` the connection speaks another protocol: no HTTP answer comes on it.
	"""

	def __init__(self, *answers):
		self.answers = list(answers)
		self.connections = 0
		self.server = socket.create_server(("127.0.0.1", 0))
		threading.Thread(target=self._accept, daemon=True).start()

	def url(self) -> str:
		return f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"

	def _accept(self):
		while True:
			try:
				connection, _ = self.server.accept()
			except OSError:
				return
			self.connections += 1
			threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

	def _serve(self, connection):
		with connection:
			while self.answers:
				if not _read_request(connection):
					return
				answer = self.answers.pop(0)
				connection.sendall(answer)
				if answer.startswith(b"HTTP/1.1 101 "):
					time.sleep(5)
					return

	def close(self):
		self.server.close()


def one_connection(answer) -> tuple[str, socket.socket]:
	"""Listens on 127.0.0.1 for one connection; reads its request, then calls ``answer(connection)``."""
	server = socket.create_server(("127.0.0.1", 0))

	def serve():
		connection, _ = server.accept()
		with connection:
			_read_request(connection)
			with contextlib.suppress(OSError):
				answer(connection)

	threading.Thread(target=serve, daemon=True).start()
	return f"http://127.0.0.1:{server.getsockname()[1]}/hook", server


def _read_request(connection) -> bool:
	data = b""
	while b"\r\n\r\n" not in data:
		chunk = connection.recv(65536)
		if not chunk:
			return False
		data += chunk
	head, _, body = data.partition(b"\r\n\r\n")
	length = next(
		int(line.split(b":", 1)[1])
		for line in head.split(b"\r\n")
		if line.lower().startswith(b"content-length:")
	)
	while len(body) < length:
		body += connection.recv(65536)
	return True


@pytest.mark.parametrize(
	"interim, final, expected",
	[
		(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n", 200, (True, False)),
		(b"HTTP/1.1 102 Processing\r\n\r\n", 503, (False, True)),
		(b"HTTP/1.1 102 Processing\r\n\r\n" * 3, 200, (True, False)),
	],
)
def test_an_interim_1xx_answer_is_read_past_to_the_final_one(sender, interim, final, expected):
	# http.client skips "100 Continue" only: a 102 or 103 was taken for the answer, a status
	# that is no success and no retry, so an event the receiver took (or asked to get again)
	# went straight to the dead letters.
	server = RawReceiver(interim + b"HTTP/1.1 %d Final\r\nContent-Length: 2\r\n\r\nok" % final)
	outcome = sender.send(WebhookTarget(server.url(), timeout=2), "evt-1xx", BODY)
	server.close()
	assert (outcome.ok, outcome.retryable, outcome.status_code) == (*expected, final), outcome
	assert outcome.response_excerpt == "ok"


def test_a_connection_that_switched_protocols_is_never_used_for_the_next_event(sender):
	# After a 101 the connection speaks another protocol: back in the pool, the next event's
	# request went down it and waited for an answer that never came.
	server = RawReceiver(
		b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	)
	first = sender.send(WebhookTarget(server.url(), timeout=1), "evt-101", BODY)
	second = sender.send(WebhookTarget(server.url(), timeout=1), "evt-next", BODY)
	server.close()
	assert not first.ok and first.status_code == 101
	assert second.ok and second.status_code == 200, second
	assert server.connections == 2


def _past_date() -> str:
	# What a receiver whose clock runs a minute behind ours sends for "in 10 seconds".
	moment = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=50)
	return email.utils.format_datetime(moment, usegmt=True)


@pytest.mark.parametrize("retry_after", ["0", "-30", "soon", "PAST"])
def test_a_retry_after_of_zero_or_in_the_past_never_retries_sooner_than_the_backoff(retry_after):
	# Taken as "retry now", a failing receiver answering 503 with Retry-After: 0 (or a date its
	# slow clock sees as future) had all eight attempts within a second: dead-lettered in an outage.
	value = _past_date() if retry_after == "PAST" else retry_after
	receiver = Receiver().start()
	receiver.default = Reply(503, headers=(("Retry-After", value),))
	subscription = build_subscription(
		"storm", receiver.url("/hook"), event_types=["*"], initial_delay=5, jitter=0.0
	)
	fabric = Fabric([subscription])
	fabric.emit(make_envelope())
	before = dt.datetime.now()
	assert fabric.worker().deliver_due().retrying == 1
	(row,) = fabric.rows()
	assert row.status == PENDING and row.attempts == 1
	assert (row.next_attempt_at - before).total_seconds() >= 4.9, row.next_attempt_at - before
	fabric.close()
	receiver.stop()


def test_retry_after_lengthens_the_backoff_up_to_its_cap_and_never_shortens_it():
	policy = RetryPolicy(max_attempts=5, backoff=Backoff(10, 2, 60, 0), max_retry_after=120)
	assert [policy.delay_after(n) for n in (1, 2, 3)] == [10, 20, 40]
	assert [policy.delay_after(n, 0) for n in (1, 2, 3)] == [10, 20, 40]
	assert policy.delay_after(1, 90) == 90 and policy.delay_after(1, 10 * 365 * 86400) == 120
	assert policy.delay_after(5, 0) is None


def test_endless_interim_answers_hold_the_attempt_no_longer_than_its_timeout(sender):
	def processing_for_ever(connection):
		while True:
			connection.sendall(b"HTTP/1.1 102 Processing\r\n\r\n")
			time.sleep(0.01)

	url, server = one_connection(processing_for_ever)
	started = time.monotonic()
	outcome = sender.send(WebhookTarget(url, timeout=0.5), "e", BODY)
	server.close()
	assert time.monotonic() - started < 1.5
	assert (outcome.ok, outcome.retryable) == (False, True) and "did not answer within 0.5 s" in outcome.error


def test_https_to_a_port_serving_plain_http_says_so(sender):
	# The error was urllib3's: "DeadlineHTTPSConnectionPool(host=...): Max retries exceeded with
	# url: /hook (Caused by SSLError(SSLError(1, '[SSL: WRONG_VERSION_NUMBER] ...')))".
	receiver = Receiver().start()
	outcome = sender.send(WebhookTarget(receiver.url("/hook", scheme="https"), timeout=2), "e", BODY)
	receiver.stop()
	assert (outcome.ok, outcome.retryable) == (False, True)
	assert "TLS handshake failed" in outcome.error and "should start with http://" in outcome.error
	assert "Max retries" not in outcome.error and "ConnectionPool" not in outcome.error, outcome.error


def test_a_closed_or_refused_connection_is_told_without_the_pools_wrapping(sender):
	url, server = one_connection(lambda connection: None)  # reads the request, closes, no word
	closed = sender.send(WebhookTarget(url, timeout=2), "e", BODY)
	server.close()
	refused = sender.send(WebhookTarget(url, timeout=2), "e", BODY)
	assert closed.retryable and "closed the connection without answering" in closed.error, closed.error
	assert refused.retryable and refused.error.endswith(": Connection refused; retrying."), refused.error
	assert "object at 0x" not in refused.error and "Max retries" not in refused.error


def test_a_body_cut_short_by_a_reset_is_still_recorded(sender):
	# The 503's explanation came, then a reset: the whole excerpt was dropped.
	def reset_mid_body(connection):
		connection.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 1000\r\n\r\ndatabase down")
		time.sleep(0.2)
		connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

	url, server = one_connection(reset_mid_body)
	outcome = sender.send(WebhookTarget(url, timeout=2), "e", BODY)
	server.close()
	assert (outcome.ok, outcome.retryable, outcome.status_code) == (False, True, 503)
	assert outcome.response_excerpt == "database down"


@pytest.mark.parametrize("code", [300, 304])
def test_a_3xx_without_a_location_is_not_told_as_a_redirect(sender, code):
	server = RawReceiver(b"HTTP/1.1 %d Odd\r\nContent-Length: 0\r\n\r\n" % code)
	outcome = sender.send(WebhookTarget(server.url(), timeout=2), "e", BODY)
	server.close()
	assert (outcome.ok, outcome.retryable, outcome.status_code) == (False, False, code)
	assert "redirected" not in outcome.error and f"answered {code} Odd" in outcome.error, outcome.error
