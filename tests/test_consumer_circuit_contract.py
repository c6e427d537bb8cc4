"""One contract for every CircuitStore adapter: process memory and real Redis.

Time is passed in explicitly, so the windows and open times are exact without sleeping. A
"worker" is another view of the same state: the same object in memory, another Redis client.
"""

import pytest

from cauldron_fabric.core.consumer.circuit import CircuitBreaker, CircuitOpen, MemoryCircuitStore
from cauldron_fabric.core.consumer.circuit_redis import RedisCircuitStore
from cauldron_fabric.core.consumer.ports import CircuitPolicy
from conftest import redis_circuits

POLICY = CircuitPolicy(failure_threshold=3, window_seconds=10, open_seconds=5, probe_seconds=2)
T0 = 1_800_000_000.0


@pytest.fixture(params=["memory", "redis"])
def worker(request):
	"""Returns a function that opens another worker's view of one shared circuit state."""
	if request.param == "memory":
		store = MemoryCircuitStore()
		yield lambda: store
		return
	with redis_circuits() as open_store:
		yield open_store


def fail(store, target, *times):
	return [store.record_failure(target, T0 + t, POLICY) for t in times][-1]


def test_failures_within_the_window_open_the_circuit_for_every_worker(worker):
	one, other = worker(), worker()
	assert fail(one, "pricing", 0, 1).state == "closed"
	state = fail(other, "pricing", 2)
	assert (state.state, state.failures, state.opened_at, state.retry_at) == ("open", 3, T0 + 2, T0 + 7)
	assert one.acquire("pricing", T0 + 3, POLICY) == (False, one.get("pricing", T0 + 3, POLICY))
	assert one.acquire("stock", T0 + 3, POLICY)[0], "each target has its own circuit"


def test_failures_older_than_the_window_do_not_count(worker):
	store = worker()
	fail(store, "pricing", 0, 5)
	state = fail(store, "pricing", 12)
	assert (state.state, state.failures) == ("closed", 2)
	assert store.acquire("pricing", T0 + 12, POLICY)[0]


def test_after_the_open_time_one_probe_goes_and_its_success_closes_the_circuit(worker):
	one, other = worker(), worker()
	fail(one, "pricing", 0, 0, 0)
	allowed, state = one.acquire("pricing", T0 + 5, POLICY)
	assert allowed and state.state == "half_open" and state.retry_at == T0 + 7
	assert not other.acquire("pricing", T0 + 5.5, POLICY)[0], "only one probe at a time"
	closed = other.record_success("pricing", T0 + 6, POLICY)
	assert (closed.state, closed.failures) == ("closed", 0)
	assert one.acquire("pricing", T0 + 6, POLICY)[0]


def test_a_failed_probe_opens_the_circuit_again(worker):
	store = worker()
	fail(store, "pricing", 0, 0, 0)
	assert store.acquire("pricing", T0 + 5, POLICY)[0]
	state = fail(store, "pricing", 6)
	assert (state.state, state.opened_at) == ("open", T0 + 6)
	assert not store.acquire("pricing", T0 + 10, POLICY)[0]
	assert store.acquire("pricing", T0 + 11, POLICY)[0]


def test_a_probe_that_never_reports_back_is_replaced(worker):
	store = worker()
	fail(store, "pricing", 0, 0, 0)
	assert store.acquire("pricing", T0 + 5, POLICY)[0]
	assert not store.acquire("pricing", T0 + 6.9, POLICY)[0]
	assert store.acquire("pricing", T0 + 7, POLICY)[0], "the first probe's worker may have died"


def test_states_are_listed_and_reset(worker):
	store = worker()
	fail(store, "pricing", 0, 0, 0)
	fail(store, "stock", 0)
	assert [(s.target, s.state) for s in store.all(T0 + 1, POLICY)] == [
		("pricing", "open"),
		("stock", "closed"),
	]
	store.reset("pricing")
	assert store.get("pricing", T0 + 1, POLICY).state == "closed"
	assert [s.target for s in store.all(T0 + 1, POLICY)] == ["stock"]


def test_the_breaker_refuses_calls_at_once_with_a_clear_message(worker):
	now = [T0]
	breaker = CircuitBreaker(worker(), POLICY, clock=lambda: now[0])
	for _ in range(3):
		with pytest.raises(TimeoutError):
			breaker.call("pricing", lambda: (_ for _ in ()).throw(TimeoutError("no reply")))
	with pytest.raises(CircuitOpen, match=r"'pricing' is open after 3 failure\(s\).*refused until"):
		breaker.call("pricing", lambda: "never called")
	now[0] = T0 + 5
	assert breaker.call("pricing", lambda: "probe answered") == "probe answered"
	assert breaker.state("pricing").state == "closed"


def test_an_unreachable_redis_lets_calls_through():
	store = RedisCircuitStore("redis://127.0.0.1:1/0", "fabric-test:")
	assert store.acquire("pricing", T0, POLICY)[0]
	assert store.record_failure("pricing", T0, POLICY).state == "closed"
