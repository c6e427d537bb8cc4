"""How long one webhook attempt may last: the subscription's timeout bounds it whole, from
connecting (TCP, and TLS for HTTPS) through the upload to the response, against real receivers
that are slow at each step on purpose."""

import re
import socket
import threading
import time

import pytest

from cauldron_fabric.core.delivery.addresses import AddressPolicy, HostUnresolvable
from cauldron_fabric.core.delivery.webhook import WebhookSender, WebhookTarget
from cauldron_fabric.testing.http_receiver import Reply, SlowAcceptor, SlowReader
from conftest import BODY


def test_a_receiver_slower_than_the_timeout_is_a_retryable_timeout(receiver, sender):
	receiver.reply("/hook", Reply(200, delay=1.0))
	started = time.monotonic()
	outcome = sender.send(WebhookTarget(receiver.url(), timeout=0.3), "evt-7", BODY)
	assert (outcome.ok, outcome.retryable) == (False, True) and "did not answer within 0.3 s" in outcome.error
	assert time.monotonic() - started < 0.9


def test_a_2xx_whose_body_is_slow_is_delivered_not_retried_into_a_duplicate(receiver, sender):
	# The status says the receiver took the event; retrying because the body dawdled would
	# deliver it twice.
	receiver.reply("/hook", Reply(202, body_delay=1.0), Reply(503, body_delay=1.0))
	outcome = sender.send(WebhookTarget(receiver.url(), timeout=0.3), "evt-slow-body", BODY)
	assert (outcome.ok, outcome.status_code) == (True, 202)
	outcome = sender.send(WebhookTarget(receiver.url(), timeout=0.3), "evt-slow-503", BODY)
	assert (outcome.ok, outcome.retryable, outcome.status_code) == (False, True, 503)


def test_a_body_trickled_byte_by_byte_holds_the_attempt_no_longer_than_its_timeout(receiver, sender):
	# Each byte comes within the read timeout, so only a deadline on the whole read ends it;
	# without one a receiver could hold a worker until its claim is freed and the event sent twice.
	receiver.reply("/hook", Reply(200, body=b"x" * 100, trickle=0.05))
	started = time.monotonic()
	outcome = sender.send(WebhookTarget(receiver.url(), timeout=0.5), "evt-trickle", BODY)
	assert (outcome.ok, outcome.status_code) == (True, 200)
	assert time.monotonic() - started < 2.0


def test_a_status_line_and_headers_trickled_byte_by_byte_hold_the_attempt_no_longer_than_its_timeout(
	sender,
):
	# Each byte comes within the read timeout, which bounds one read only: a receiver trickling
	# an endless header held the worker past its claim, and the event was sent twice.
	server = socket.create_server(("127.0.0.1", 0))
	threading.Thread(target=_trickle_head, args=(server,), daemon=True).start()
	started = time.monotonic()
	outcome = sender.send(
		WebhookTarget(f"http://127.0.0.1:{server.getsockname()[1]}/hook", timeout=0.5), "e", BODY
	)
	server.close()
	assert time.monotonic() - started < 2.0
	assert (outcome.ok, outcome.retryable) == (False, True) and "did not answer within 0.5 s" in outcome.error


def _trickle_head(server) -> None:
	connection, _ = server.accept()
	connection.recv(65536)
	head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 60_000
	try:
		for byte in head:
			connection.sendall(bytes([byte]))
			time.sleep(0.05)
	except OSError:
		pass  # the sender gave up and closed the connection
	connection.close()


def test_a_receiver_reading_the_body_slowly_has_the_whole_timeout_to_take_it_and_no_more(sender):
	# The upload was bounded by the connect timeout (5 s at most), not by the attempt's: a large
	# body to a receiver needing more than 5 s of its 6 s was cut at 5 s, as "Could not reach".
	server = SlowReader()
	started = time.monotonic()
	outcome = sender.send(WebhookTarget(server.url(), timeout=6), "evt-slow-upload", b"x" * 8_000_000)
	elapsed = time.monotonic() - started
	server.stop()
	assert 5.9 <= elapsed < 7.0, elapsed
	assert (outcome.ok, outcome.retryable) == (False, True)
	assert "did not take the whole request within 6 s" in outcome.error, outcome.error


@pytest.mark.parametrize("timeout", [1, 6])
def test_a_receiver_that_never_completes_the_connection_is_not_blamed_for_reading_slowly(sender, timeout):
	# It accepts TCP but never answers the TLS handshake: nothing of the request was sent, and a
	# longer timeout would not help (the connection has 5 s at most), yet the error said the
	# receiver "read the body too slowly" and to raise the subscription's timeout.
	server = socket.create_server(("127.0.0.1", 0))
	url = f"https://127.0.0.1:{server.getsockname()[1]}/hook"
	outcome = sender.send(WebhookTarget(url, timeout=timeout), "evt-no-tls", BODY)
	server.close()
	assert (outcome.ok, outcome.retryable) == (False, True)
	# It did accept the connection: the admin reading the error is told the TLS handshake stalled.
	assert f"did not finish the TLS handshake within {min(timeout, 5)} s" in outcome.error, outcome.error
	assert "did not accept" not in outcome.error and "whole request" not in outcome.error


def test_a_receiver_that_never_accepts_the_connection_is_given_up_on_within_the_timeout(sender):
	# Its backlog is full: the kernel drops the SYNs, and the connection never completes.
	server = SlowAcceptor()
	started = time.monotonic()
	outcome = sender.send(WebhookTarget(server.url(), timeout=1.5), "evt-no-accept", BODY)
	elapsed = time.monotonic() - started
	server.stop()
	assert elapsed < 1.5 + 0.3, elapsed
	assert (outcome.ok, outcome.retryable) == (False, True)
	assert "did not accept the connection within 1.5 s" in outcome.error, outcome.error


def test_a_connection_accepted_late_leaves_the_tls_handshake_only_the_rest_of_the_timeout(sender):
	# TCP completes after about a second (the SYN retried once room was made), then the TLS
	# handshake never ends: it had a timeout of its own on top, and the attempt lasted 3 s of 2.
	server = SlowAcceptor(accept_after=0.3)
	started = time.monotonic()
	outcome = sender.send(WebhookTarget(server.url(), timeout=2), "evt-late-tls", BODY)
	elapsed = time.monotonic() - started
	server.stop()
	assert elapsed < 2 + 0.3, elapsed
	assert (outcome.ok, outcome.retryable) == (False, True)
	# The handshake had what the TCP connect left of the 2 s, about 1 s.
	assert re.search(r"did not finish the TLS handshake within (0\.[5-9]|1(\.[0-4])?) s", outcome.error), (
		outcome.error
	)


def test_a_body_trickled_after_a_late_answer_gets_only_what_is_left_of_the_timeout(receiver, sender):
	# The body had a whole timeout of its own from the status line: a head at 0.8 s of 1 s and a
	# body trickled after it held the attempt 1.8 s.
	receiver.reply("/hook", Reply(200, delay=0.8, body=b"x" * 100, trickle=0.05))
	started = time.monotonic()
	outcome = sender.send(WebhookTarget(receiver.url(), timeout=1), "evt-late-trickle", BODY)
	elapsed = time.monotonic() - started
	assert (outcome.ok, outcome.status_code) == (True, 200)
	assert elapsed < 1 + 0.3, elapsed


def test_a_body_that_never_comes_after_a_late_answer_holds_the_attempt_no_longer_than_its_timeout(
	receiver, sender
):
	# One read of the body waited the whole read timeout, whatever was left of the attempt's.
	receiver.reply("/hook", Reply(202, delay=0.8, body_delay=2.0))
	started = time.monotonic()
	outcome = sender.send(WebhookTarget(receiver.url(), timeout=1), "evt-late-silent", BODY)
	elapsed = time.monotonic() - started
	assert (outcome.ok, outcome.status_code) == (True, 202)
	assert elapsed < 1 + 0.3, elapsed


def test_a_host_name_that_resolves_slowly_holds_the_attempt_no_longer_than_its_timeout(receiver):
	# The resolver stands for a DNS server that answers late (glibc waits 5 s per server and try);
	# the name was resolved before the deadline started, and for as long as it took.
	def slow_resolver(host, port):
		time.sleep(3)
		return ["127.0.0.1"]

	sender = WebhookSender(AddressPolicy.from_allow_list(["127.0.0.0/8"], resolver=slow_resolver))
	started = time.monotonic()
	outcome = sender.send(WebhookTarget(receiver.url(host="receiver.test"), timeout=1), "evt-dns", BODY)
	elapsed = time.monotonic() - started
	sender.close()
	assert elapsed < 1 + 0.3, elapsed
	assert (outcome.ok, outcome.retryable) == (False, True)
	assert "'receiver.test' did not resolve within 1 s" in outcome.error, outcome.error
	assert receiver.requests == []


def test_a_connection_not_accepted_is_reported_with_the_time_it_had_after_resolving():
	# The error gave the whole timeout as the time the receiver had to accept the connection,
	# though resolving the name had taken most of it.
	def slow_resolver(host, port):
		time.sleep(0.6)
		return ["127.0.0.1"]

	server = SlowAcceptor()
	port = server.server.getsockname()[1]
	sender = WebhookSender(AddressPolicy.from_allow_list(["127.0.0.0/8"], resolver=slow_resolver))
	outcome = sender.send(WebhookTarget(f"https://receiver.test:{port}/hook", timeout=1.5), "e", BODY)
	sender.close()
	server.stop()
	assert (outcome.ok, outcome.retryable) == (False, True)
	assert re.search(r"did not accept the connection within 0\.[89] s", outcome.error), outcome.error


def test_a_host_name_whose_dns_never_answers_holds_up_no_other_host_name():
	# Every attempt for such a name gave up at its timeout but left its lookup queued: eight of
	# them held every resolver thread, and the lookups of all other webhooks waited behind the
	# rest and failed as "did not resolve" too, each abandoned lookup still run in its turn.
	answer = threading.Event()
	looked_up = []

	def resolver(host, port):
		looked_up.append(host)
		if host == "silent-dns.test":
			answer.wait(10)
		return ["127.0.0.1"]

	policy = AddressPolicy.from_allow_list(["127.0.0.0/8"], resolver=resolver)
	try:
		for _ in range(20):
			with pytest.raises(HostUnresolvable, match="did not resolve within"):
				policy.resolve("silent-dns.test", 443, within=0.05)
		started = time.monotonic()
		assert policy.resolve("receiver.test", 443, within=1) == "127.0.0.1"
		assert time.monotonic() - started < 0.5
		assert looked_up.count("silent-dns.test") == 1  # the attempts shared the lookup under way
	finally:
		answer.set()
