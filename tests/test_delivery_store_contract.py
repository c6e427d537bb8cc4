"""One contract for every DeliveryStore adapter: the memory store and the MariaDB table."""

import datetime as dt
import time

import pytest

from cauldron_fabric.core.delivery.records import (
	DEAD,
	DEFERRED,
	DELIVERED,
	DISCARDED,
	PENDING,
	RETRYING,
	DeliveryAttempt,
	DeliveryRequest,
)
from cauldron_fabric.core.delivery.store_memory import MemoryDeliveries
from cauldron_fabric.core.delivery.store_sql import SqlDeliveryStore
from cauldron_fabric.core.sqlsession import StoreUnavailable
from conftest import (
	TRICKY_TEXT,
	connect_db,
	connect_db_without_backslash_escapes,
	make_envelope,
)


class SqlSessions:
	"""Opens stores on one fresh table; each store is one worker's connection."""

	def __init__(self, table, sequence):
		self.table, self.sequence, self.opened = table, sequence, []

	def open(self):
		store = SqlDeliveryStore(connect_db, table=self.table, sequence=self.sequence)
		self.opened.append(store)
		return store

	def enqueue(self, requests):
		store = self.open()
		added = store.enqueue(requests)
		store.commit()
		return added

	def close(self):
		for store in self.opened:
			store.close()


class MemorySessions:
	def __init__(self):
		self.deliveries = MemoryDeliveries()

	def open(self):
		return self.deliveries.session()

	def enqueue(self, requests):
		return self.open().enqueue(requests)

	def close(self):
		pass


@pytest.fixture(params=["memory", "mariadb"])
def sessions(request):
	backend = (
		MemorySessions()
		if request.param == "memory"
		else SqlSessions(*request.getfixturevalue("delivery_table"))
	)
	yield backend
	backend.close()


def requests_for(subscription, entities, ordered=False):
	return [
		DeliveryRequest(subscription, env, env.partition_key if ordered else None)
		for env in (make_envelope("ToDo", entity, "updated", n=n) for n, entity in enumerate(entities))
	]


def attempt(job, status, next_in=None, error=None, code=None):
	now = dt.datetime.now()
	return DeliveryAttempt(
		job.seq, job.subscription, job.event_id, job.attempts + (status != DEFERRED), status, now,
		"https://example.com/hook", 12.5, code, error, None,
		None if next_in is None else now + dt.timedelta(seconds=next_in),
	)  # fmt: skip


def test_enqueue_skips_a_delivery_already_queued(sessions):
	requests = requests_for("S1", ["A", "B"])
	assert sessions.enqueue(requests) == 2
	assert sessions.enqueue([*requests, *requests_for("S2", ["A"])]) == 1
	assert sessions.open().status_counts() == {PENDING: 3}


def test_claim_returns_due_deliveries_oldest_first_with_their_event(sessions):
	requests = requests_for("S1", ["A", "B", "C"])
	sessions.enqueue(requests)
	store = sessions.open()
	jobs = store.claim(10)
	assert [job.event_id for job in jobs] == [r.envelope.id for r in requests]
	assert jobs[0].envelope() == requests[0].envelope and jobs[0].attempts == 0 and jobs[0].history == ()
	store.release()


def test_queued_envelope_comes_back_byte_for_byte(sessions):
	# The envelope goes into the INSERT as a literal, once per event however many
	# subscriptions match: quotes, backslashes, percent signs and non-ASCII text must survive.
	envelope = make_envelope("ToDo", "T-'%s", "updated", note=TRICKY_TEXT)
	sessions.enqueue([DeliveryRequest("S1", envelope, None), DeliveryRequest("S2", envelope, None)])
	store = sessions.open()
	jobs = store.claim(10)
	assert [job.envelope_json for job in jobs] == [envelope.to_json()] * 2
	assert jobs[0].envelope() == envelope
	store.release()


def test_an_envelope_queued_without_backslash_escapes_comes_back_byte_for_byte(delivery_table):
	# The SQL mode decides how a literal is read: written as for the default mode, the quote
	# in the text would end the literal early.
	table, sequence = delivery_table
	envelope = make_envelope("ToDo", "T-'%s", "updated", note=TRICKY_TEXT)
	writer = SqlDeliveryStore(connect_db_without_backslash_escapes, table=table, sequence=sequence)
	writer.enqueue([DeliveryRequest("S1", envelope, None)])
	writer.commit()
	writer.close()
	store = SqlDeliveryStore(connect_db, table=table, sequence=sequence)
	(job,) = store.claim(10)
	assert job.envelope_json == envelope.to_json()
	store.close()


def test_a_claim_left_idle_too_long_goes_to_the_next_worker_and_its_settle_is_retryable(delivery_table):
	# A worker that froze holding a claim (SIGSTOP, a paused VM) kept its rows, and every later
	# delivery of their entities, from the other workers until wait_timeout: 8 hours by default.
	table, sequence = delivery_table
	SqlSessions(table, sequence).enqueue(requests_for("S1", ["A", "B"], ordered=True))
	frozen = SqlDeliveryStore(connect_db, table=table, sequence=sequence, claim_idle_seconds=1)
	other = SqlDeliveryStore(connect_db, table=table, sequence=sequence)
	try:
		claimed = frozen.claim(10)
		assert other.claim(10) == []
		time.sleep(2.5)
		assert [job.seq for job in other.claim(10)] == [job.seq for job in claimed]
		other.settle([attempt(job, DELIVERED) for job in claimed])
		with pytest.raises(StoreUnavailable):
			frozen.settle([attempt(job, DELIVERED) for job in claimed])
		assert frozen.claim(10) == []  # a fresh connection works on
	finally:
		frozen.close()
		other.close()


def test_two_workers_never_hold_the_same_delivery(sessions):
	sessions.enqueue(requests_for("S1", ["A", "B", "C", "D"]))
	first, second = sessions.open(), sessions.open()
	held, others = first.claim(2), second.claim(10)
	assert len(held) == 2 and len(others) == 2
	assert {j.seq for j in held}.isdisjoint(j.seq for j in others)
	first.release()
	second.release()


def test_a_delivered_delivery_is_not_claimed_again(sessions):
	sessions.enqueue(requests_for("S1", ["A"]))
	store = sessions.open()
	(job,) = store.claim(10)
	store.settle([attempt(job, DELIVERED, code=200)])
	assert store.claim(10) == []
	row = store.get(job.seq)
	assert (row.status, row.attempts, row.last_status_code, row.last_latency_ms) == (DELIVERED, 1, 200, 12.5)
	assert row.delivered_at is not None and row.history[0]["status"] == DELIVERED


def test_a_retry_waits_for_its_time_then_keeps_its_history(sessions):
	sessions.enqueue(requests_for("S1", ["A", "B"]))
	store = sessions.open()
	a, b = store.claim(10)
	store.settle(
		[attempt(a, RETRYING, next_in=3600, error="500 boom", code=500), attempt(b, RETRYING, next_in=-1)]
	)
	(again,) = store.claim(10)
	assert again.seq == b.seq and again.attempts == 1 and again.history[0]["status"] == RETRYING
	store.settle([attempt(again, DELIVERED)])
	row = store.get(a.seq)
	assert (row.status, row.attempts, row.last_error) == (PENDING, 1, "500 boom")
	assert [h["attempt"] for h in store.get(b.seq).history] == [1, 2]


def test_a_deferral_is_not_an_attempt(sessions):
	sessions.enqueue(requests_for("S1", ["A"]))
	store = sessions.open()
	(job,) = store.claim(10)
	store.settle([attempt(job, DEFERRED, next_in=3600)])
	assert store.claim(10) == []
	row = store.get(job.seq)
	assert (row.status, row.attempts, row.history) == (PENDING, 0, ())


def test_a_leased_delivery_is_claimed_again_only_at_its_own_lease(sessions):
	sessions.enqueue(requests_for("S1", ["A", "B"]))
	store, other = sessions.open(), sessions.open()
	jobs = store.claim(10)
	leases = [attempt(job, DEFERRED, next_in=3600) for job in jobs]
	store.settle([leases[0], attempt(jobs[1], RETRYING, next_in=0)])
	assert [job.seq for job in other.claim(10)] == [jobs[1].seq], "a lease is no due delivery"
	other.release()
	wrong = {jobs[0].seq: leases[0].next_attempt_at + dt.timedelta(microseconds=1)}
	assert store.reclaim(wrong) == []
	(again,) = store.reclaim(
		{job.seq: lease.next_attempt_at for job, lease in zip(jobs, leases, strict=True)}
	)
	assert (again.seq, again.attempts) == (jobs[0].seq, 0), "the retried one is no longer at its lease"
	assert other.reclaim({again.seq: leases[0].next_attempt_at}) == [], "held by the first"
	store.settle([attempt(again, DELIVERED)])
	row = store.get(again.seq)
	assert (row.status, row.attempts) == (DELIVERED, 1)


def test_ordered_deliveries_go_one_at_a_time_per_subscription_and_entity(sessions):
	sessions.enqueue(
		requests_for("S1", ["A", "A", "B"], ordered=True) + requests_for("S2", ["A"], ordered=True)
	)
	store = sessions.open()
	jobs = store.claim(10)
	assert sorted((j.subscription, j.ordering_key) for j in jobs) == [
		("S1", "ToDo/A"),
		("S1", "ToDo/B"),
		("S2", "ToDo/A"),
	]
	first_a = next(j for j in jobs if j.subscription == "S1" and j.ordering_key == "ToDo/A")
	others = [attempt(j, DELIVERED) for j in jobs if j is not first_a]
	store.settle([attempt(first_a, RETRYING, next_in=3600), *others])
	# The second A waits behind the first one's retry, even though it is due itself.
	assert store.claim(10) == []
	store.release()


def test_a_retried_first_delivery_is_not_hidden_behind_its_own_backlog(sessions):
	# A retry (or a rate-limit deferral) moves a key's first delivery behind the key's backlog
	# in time; a claim window filled by that backlog must still reach it, and other
	# subscriptions' deliveries queued after it.
	sessions.enqueue(requests_for("S1", ["A"] * 6, ordered=True))
	sessions.enqueue(requests_for("S2", ["B"]))
	store = sessions.open()
	first = store.claim(5)
	head = next(j for j in first if j.subscription == "S1")
	store.settle([attempt(j, RETRYING, next_in=0) if j is head else attempt(j, DELIVERED) for j in first])
	again = store.claim(5)
	assert [(j.subscription, j.seq) for j in again if j.subscription == "S1"] == [("S1", head.seq)]
	claimed = {j.subscription for j in first + again}
	assert claimed == {"S1", "S2"}
	store.release()


def test_a_dead_letter_frees_its_entity_and_can_be_requeued(sessions):
	sessions.enqueue(requests_for("S1", ["A", "A"], ordered=True))
	store = sessions.open()
	(first,) = store.claim(10)
	store.settle([attempt(first, DEAD, error="410 gone", code=410)])
	(second,) = store.claim(10)
	assert second.seq != first.seq
	store.settle([attempt(second, DELIVERED)])
	assert store.status_counts() == {DEAD: 1, DELIVERED: 1}
	assert store.requeue([first.seq, second.seq]) == 1
	(again,) = store.claim(10)
	assert again.seq == first.seq and again.attempts == 0 and again.history[0]["error"] == "410 gone"
	store.release()


def test_discard_takes_pending_and_dead_deliveries_out_of_the_queue(sessions):
	sessions.enqueue(requests_for("S1", ["A", "B"]))
	store = sessions.open()
	a, b = store.claim(10)
	store.settle([attempt(a, DEAD, error="gone"), attempt(b, DELIVERED)])
	assert store.discard([a.seq, b.seq]) == 1
	assert store.status_counts() == {DISCARDED: 1, DELIVERED: 1}
	assert store.get(10_000_000) is None


def test_released_deliveries_are_claimed_again(sessions):
	sessions.enqueue(requests_for("S1", ["A"]))
	store = sessions.open()
	(job,) = store.claim(10)
	store.release()
	assert [j.seq for j in sessions.open().claim(10)] == [job.seq]


def test_claim_twice_without_settling_is_a_programming_error(sessions):
	sessions.enqueue(requests_for("S1", ["A", "B"]))
	store = sessions.open()
	store.claim(1)
	with pytest.raises(RuntimeError, match="without settle"):
		store.claim(1)
	store.release()
