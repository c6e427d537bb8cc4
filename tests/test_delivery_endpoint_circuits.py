"""Webhook endpoint circuits over a long run and without Redis: deliveries go on when Redis cannot be
reached (said once in the log), and the breaker's memory stays bounded however many endpoints it
sees. Real HTTP receivers and real Redis."""

import datetime as dt
import logging
import socket
import subprocess
import time
import uuid

import pytest
import redis
from delivery_fabric import FAST, Fabric
from test_delivery_endpoint_isolation import BlackHole

from cauldron_fabric.core.delivery import circuit_redis
from cauldron_fabric.core.delivery.circuit import EndpointBreaker, EndpointPolicy, endpoint_of
from cauldron_fabric.core.delivery.circuit_redis import RedisEndpointCircuits
from cauldron_fabric.core.delivery.records import DELIVERED, PENDING, Outcome
from cauldron_fabric.core.delivery.subscription import build_subscription
from cauldron_fabric.testing.http_receiver import Receiver, Reply
from conftest import REDIS_URL, make_envelope


@pytest.fixture
def receivers():
	servers = [Receiver().start() for _ in range(2)]
	yield servers
	for server in servers:
		server.stop()


@pytest.fixture
def circuits():
	store = RedisEndpointCircuits(REDIS_URL, f"fabric-test:{uuid.uuid4().hex[:8]}:")
	yield store
	client = redis.Redis.from_url(REDIS_URL)
	for key in client.scan_iter(store.prefix + "*"):
		client.delete(key)
	client.close()
	store.close()


def unreachable_redis() -> RedisEndpointCircuits:
	"""Returns circuits on a Redis address nothing listens on."""
	return RedisEndpointCircuits("redis://127.0.0.1:1/0", "fabric-test:")


def test_deliveries_go_on_without_redis_and_the_log_says_so_once(receivers, caplog):
	flaky, steady = receivers
	flaky.reply("/hook", *[Reply(503)] * 3)
	subscriptions = [
		build_subscription("flaky", flaky.url(), event_types=["*"], **FAST),
		build_subscription("steady", steady.url(), event_types=["*"], **FAST),
	]
	store = unreachable_redis()
	# Rechecked often, as a long run with many endpoints asks Redis often.
	fabric = Fabric(subscriptions, circuits=EndpointBreaker(store, recheck_seconds=0.05))
	fabric.emit(*[make_envelope("ToDo", f"T-{n}") for n in range(5)])
	worker = fabric.worker()
	caplog.set_level(logging.INFO, logger="cauldron_fabric.circuit")
	started = time.monotonic()
	deadline = started + 8
	while any(row.status == PENDING for row in fabric.rows()) and time.monotonic() < deadline:
		worker.deliver_due()
		time.sleep(0.05)
	assert {row.status for row in fabric.rows()} == {DELIVERED}
	assert time.monotonic() - started < 4, "no attempt waited for Redis"
	warnings = [r.getMessage() for r in caplog.records if r.name == "cauldron_fabric.circuit"]
	assert len(warnings) == 1, warnings
	assert "unavailable" in warnings[0] and "Check Redis" in warnings[0]
	store.close()
	fabric.close()


def start_redis(port: int) -> subprocess.Popen:
	"""Starts a Redis of the test's own on ``port`` and waits until it answers."""
	server = subprocess.Popen(
		["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL
	)
	client = redis.Redis(port=port)
	deadline = time.monotonic() + 5
	while time.monotonic() < deadline:
		try:
			client.ping()
			break
		except redis.RedisError:
			time.sleep(0.05)
	client.close()
	return server


def test_redis_back_is_asked_again_and_said_once(caplog, monkeypatch):
	with socket.socket() as probe:
		probe.bind(("127.0.0.1", 0))
		port = probe.getsockname()[1]
	store = RedisEndpointCircuits(f"redis://127.0.0.1:{port}/0", "fabric-test:")
	caplog.set_level(logging.INFO, logger="cauldron_fabric.circuit")
	policy, endpoint = EndpointPolicy(failure_threshold=1), "http://hooks.example:80"
	assert store.acquire(endpoint, time.time(), 5)[0], "Redis down: the attempt goes"
	assert store.record_failure(endpoint, time.time(), policy).state == "closed", "not recorded"
	server = start_redis(port)
	try:
		assert store.record_failure(endpoint, time.time(), policy).state == "closed", "not asked yet"
		monkeypatch.setattr(circuit_redis, "UNAVAILABLE_RETRY_SECONDS", 0.0)
		store._unavailable_until = 0.0  # the retry time has come
		assert store.record_failure(endpoint, time.time(), policy).state == "open"
		assert not store.acquire(endpoint, time.time(), 5)[0], "the circuit works again"
	finally:
		server.terminate()
		server.wait()
		store.close()
	messages = [r.getMessage() for r in caplog.records if r.name == "cauldron_fabric.circuit"]
	assert len(messages) == 2 and "back" in messages[1], messages


def test_the_breaker_forgets_the_endpoints_it_trusted_once_their_time_is_over(circuits):
	now = [1_000_000.0]
	breaker = EndpointBreaker(circuits, clock=lambda: now[0], recheck_seconds=1.0)
	for round_ in range(3):  # a long run: each second other endpoints (per tenant, per customer)
		for n in range(1500):
			assert breaker.admit(f"http://tenant-{round_}-{n}.example:80", 5)[0]
		now[0] += 2
	assert len(breaker._healthy) <= 3000, "the endpoints trusted seconds ago are forgotten"


def test_a_probe_that_never_went_frees_its_slot_at_once(receivers, circuits):
	hole, down = BlackHole(), receivers[0]
	subscriptions = [
		build_subscription("a-hole-1", hole.url(), event_types=["*"], timeout=5, **FAST),
		build_subscription("a-hole-2", hole.url(), event_types=["*"], timeout=5, **FAST),
		build_subscription("z-probe", down.url(), event_types=["*"], timeout=5, **FAST),
	]
	breaker = EndpointBreaker(circuits, EndpointPolicy(failure_threshold=1, open_seconds=0.2))
	# Two sending threads: the black hole's requests take both, the probe waits behind them.
	fabric = Fabric(subscriptions, circuits=breaker, concurrency=1)
	endpoint = endpoint_of(down.url())
	assert circuits.record_failure(endpoint, time.time(), breaker.policy).state == "open"
	time.sleep(0.25)  # the open time is over: the next attempt is the probe
	fabric.emit(make_envelope())
	worker = fabric.worker(patience=0.3)
	report = worker.deliver_due()
	assert (report.in_flight, report.deferred) == (2, 1), "the probe never started: deferred"
	hole.stop()  # frees the sending threads
	deadline = time.monotonic() + 3
	while not down.on("/hook") and time.monotonic() < deadline:
		worker.deliver_due()
		time.sleep(0.05)
	assert len(down.on("/hook")) == 1, (
		"the next delivery went as the probe, not after the unsent one's timeout"
	)
	fabric.close()


def test_deliveries_the_circuit_defers_spend_none_of_the_rate_limit(receivers):
	receiver, _ = receivers
	breaker = EndpointBreaker(policy=EndpointPolicy(failure_threshold=1, open_seconds=60))
	endpoint = endpoint_of(receiver.url())
	breaker.report(endpoint, breaker.admit(endpoint, 5)[1], Outcome(False, True, "refused"))
	limited = build_subscription("limited", receiver.url(), event_types=["*"], rate_limit=0.2, **FAST)
	fabric = Fabric([limited], circuits=breaker)
	fabric.emit(*[make_envelope("ToDo", f"T-{n}") for n in range(3)])
	worker = fabric.worker()
	assert worker.deliver_due().deferred == 3 and receiver.requests == []
	breaker.store.reset(endpoint)  # the endpoint is back
	for row in fabric.deliveries.rows.values():
		row.next_attempt_at -= dt.timedelta(seconds=120)  # due again now
	# The bucket's one token (burst 1) is still there: the deferrals took none of it.
	assert worker.deliver_due().delivered == 1 and len(receiver.requests) == 1
	fabric.close()
