"""Webhook endpoints kept apart: a black hole does not hold other subscriptions back, a slow
request is settled after its batch without losing anything, and a circuit per endpoint (in real
Redis) defers an outage's deliveries instead of spending their attempts. Real HTTP receivers and
a real MariaDB queue."""

import socket
import threading
import time
import uuid

import pytest
import redis
from delivery_fabric import FAST, Fabric

from cauldron_fabric.core.delivery.circuit import EndpointBreaker, EndpointPolicy, endpoint_of
from cauldron_fabric.core.delivery.circuit_redis import RedisEndpointCircuits
from cauldron_fabric.core.delivery.records import DEAD, DELIVERED, PENDING, Outcome
from cauldron_fabric.core.delivery.store_sql import SqlDeliveryStore
from cauldron_fabric.core.delivery.subscription import build_subscription, plan_deliveries
from cauldron_fabric.core.delivery.worker import DeliveryWorker
from cauldron_fabric.testing.http_receiver import Reply
from conftest import REDIS_URL, connect_db, make_envelope


class BlackHole:
	"""Accepts connections and never answers; ``stop`` resets them."""

	def __init__(self):
		self.listener = socket.create_server(("127.0.0.1", 0))
		self.held: list[socket.socket] = []
		threading.Thread(target=self._accept, daemon=True).start()

	def url(self) -> str:
		return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

	def _accept(self):
		while True:
			try:
				self.held.append(self.listener.accept()[0])
			except OSError:
				return

	def stop(self):
		self.listener.close()
		for connection in self.held:
			connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
			connection.close()


@pytest.fixture
def circuits():
	store = RedisEndpointCircuits(REDIS_URL, f"fabric-test:{uuid.uuid4().hex[:8]}:")
	yield store
	client = redis.Redis.from_url(REDIS_URL)
	for key in client.scan_iter(store.prefix + "*"):
		client.delete(key)
	client.close()
	store.close()


def sql_store(table, sequence):
	return SqlDeliveryStore(connect_db, table=table, sequence=sequence)


def test_a_black_hole_does_not_hold_back_another_subscriptions_deliveries(receiver, delivery_table, circuits):
	hole = BlackHole()
	subscriptions = [
		build_subscription("dead-receiver", hole.url(), event_types=["*"], timeout=8, **FAST),
		build_subscription("healthy", receiver.url(), event_types=["*"], **FAST),
	]
	fabric = Fabric(subscriptions, circuits=EndpointBreaker(circuits))
	queue, store = sql_store(*delivery_table), sql_store(*delivery_table)
	worker = DeliveryWorker(store, fabric.subscriptions.get, fabric.engine)
	stop = threading.Event()
	thread = threading.Thread(target=worker.run, args=(stop.is_set,), kwargs={"idle_wait": 0.05})
	thread.start()
	sent = {}
	try:
		for n in range(16):  # 4 s of events, each for both subscriptions
			envelope = make_envelope("ToDo", f"T-{n}")
			queue.enqueue(plan_deliveries(envelope, fabric.index))
			queue.commit()
			sent[envelope.id] = time.monotonic()
			time.sleep(0.25)
		requests = receiver.wait_for("/hook", 16, timeout=10)
	finally:
		stop.set()
		hole.stop()  # resets the requests in flight, so the worker's drain ends at once
		thread.join()
	latencies = [r.started - sent[r.headers["ce-id"]] for r in requests]
	# Before, each batch waited for the black hole's 8 s timeout; the patience is 1 s.
	assert max(latencies) < 2.5, sorted(latencies)
	rows = [store.get(seq) for seq in range(1, 33)]
	healthy = [row for row in rows if row.subscription == "healthy"]
	assert {(row.status, row.attempts) for row in healthy} == {(DELIVERED, 1)}
	# The black hole's requests ended when it reset them: failed attempts, none dead, none lost.
	stuck = [row for row in rows if row.subscription == "dead-receiver"]
	assert {row.status for row in stuck} == {PENDING} and sum(row.attempts for row in stuck) <= len(hole.held)
	queue.close()
	store.close()
	fabric.close()


def test_a_request_in_flight_past_the_batch_is_settled_later_and_its_entity_waits(receiver):
	receiver.reply("/ordered", Reply(200, delay=1.0))
	fabric = Fabric(
		[build_subscription("ordered", receiver.url("/ordered"), event_types=["*"], ordered=True)]
	)
	fabric.emit(*[make_envelope("ToDo", "T-1", n=n) for n in range(2)])
	worker = fabric.worker(patience=0.2)
	started = time.monotonic()
	first = worker.deliver_due()
	assert time.monotonic() - started < 0.6 and (first.claimed, first.in_flight) == (1, 1)
	assert [(row.status, row.attempts) for row in fabric.rows()] == [(PENDING, 0), (PENDING, 0)]
	assert worker.deliver_due().claimed == 0, "the entity's next event waits for the one in flight"
	deadline = time.monotonic() + 5
	while any(row.status == PENDING for row in fabric.rows()) and time.monotonic() < deadline:
		worker.deliver_due()
		time.sleep(0.05)
	assert [(row.status, row.attempts) for row in fabric.rows()] == [(DELIVERED, 1), (DELIVERED, 1)]
	assert [r.headers["ce-id"] for r in receiver.on("/ordered")] == [row.event_id for row in fabric.rows()]
	fabric.close()


def test_a_worker_that_dies_with_a_request_in_flight_loses_nothing(receiver, delivery_table):
	receiver.reply("/hook", Reply(200, delay=3.0))  # the first request times out at 0.5 s
	subscription = build_subscription("slow", receiver.url(), event_types=["*"], timeout=0.5, **FAST)
	dying, heir = Fabric([subscription]), Fabric([subscription])
	queue = sql_store(*delivery_table)
	queue.enqueue(plan_deliveries(make_envelope(), dying.index))
	queue.commit()
	worker = DeliveryWorker(sql_store(*delivery_table), dying.subscriptions.get, dying.engine, patience=0.1)
	worker.lease_margin = 0.3
	assert worker.deliver_due().in_flight == 1
	worker.store.session.drop()  # killed: its connection is gone, its request never settled
	(row,) = [queue.get(1)]
	assert (row.status, row.attempts) == (PENDING, 0)
	other = DeliveryWorker(sql_store(*delivery_table), heir.subscriptions.get, heir.engine)
	assert other.deliver_due().claimed == 0, "the lease holds until the request's deadline has passed"
	time.sleep(1.0)
	assert other.deliver_due().delivered == 1
	assert (queue.get(1).status, queue.get(1).attempts) == (DELIVERED, 1)
	other.store.close()
	queue.close()
	for fabric in (dying, heir):
		fabric.close()


def test_the_circuit_defers_an_outage_without_spending_attempts_then_probes_and_closes(receiver, circuits):
	receiver.reply("/hook", *[Reply(503)] * 6)  # the first batch, then the first probe
	breaker = EndpointBreaker(circuits, EndpointPolicy(failure_threshold=3, open_seconds=0.5))
	fabric = Fabric([build_subscription("outage", receiver.url(), event_types=["*"], max_attempts=3, **FAST)])
	fabric.engine.circuits = breaker
	fabric.emit(*[make_envelope("ToDo", f"T-{n}") for n in range(5)])
	worker = fabric.worker()
	assert worker.deliver_due().retrying == 5
	(state,) = breaker.states()
	assert (state.target, state.state, state.failures) == (endpoint_of(receiver.url()), "open", 5)
	time.sleep(0.25)  # the retries are due, the circuit still open
	assert worker.deliver_due().deferred == 5 and len(receiver.requests) == 5
	assert {row.attempts for row in fabric.rows()} == {1}
	deadline = time.monotonic() + 5
	while len(receiver.requests) == 5 and time.monotonic() < deadline:
		assert worker.deliver_due().retrying == 0 or time.time() >= state.retry_at, "no probe before its time"
		time.sleep(0.05)
	assert len(receiver.requests) == 6, "one probe while the others wait"
	(reopened,) = breaker.states()
	assert reopened.state == "open" and reopened.retry_at - reopened.opened_at == pytest.approx(1.0)
	deadline = time.monotonic() + 8
	while any(row.status == PENDING for row in fabric.rows()) and time.monotonic() < deadline:
		worker.deliver_due()
		time.sleep(0.05)
	rows = fabric.rows()
	assert {row.status for row in rows} == {DELIVERED}, [r.history for r in rows]
	assert DEAD not in {row.status for row in rows} and max(row.attempts for row in rows) <= 3
	assert sum(row.attempts for row in rows) == len(receiver.requests) == 11, "deferrals are no attempts"
	assert breaker.states() == [], "the probe's success closed the circuit and forgot it"
	fabric.close()


def test_a_clean_endpoint_is_not_asked_of_redis_at_every_attempt_and_another_workers_opening_is_seen(
	circuits,
):
	asked = []
	acquire = circuits.acquire

	def counted(*args):
		asked.append(args[0])
		return acquire(*args)

	circuits.acquire = counted
	endpoint = "http://hooks.example:80"
	here = EndpointBreaker(circuits, EndpointPolicy(failure_threshold=2), recheck_seconds=0.3)
	there = EndpointBreaker(circuits, EndpointPolicy(failure_threshold=2))
	assert all(here.admit(endpoint, 5)[0] for _ in range(100))
	assert len(asked) == 1, "one round trip, not one per attempt"
	for _ in range(2):  # another worker finds the endpoint down
		there.report(endpoint, there.admit(endpoint, 5)[1], Outcome(False, True, "refused"))
	assert circuits.all(time.time())[0].state == "open"
	assert here.admit(endpoint, 5)[0], "trusted a moment longer"
	time.sleep(0.35)
	allowed, state = here.admit(endpoint, 5)
	assert (allowed, state.state) == (False, "open"), "then the store is asked and its answer kept"
	asked.clear()
	assert not here.admit(endpoint, 5)[0] and len(asked) == 1, "an open circuit is asked every time"
