"""One contract for every OutboxStore adapter: the memory store and the MariaDB table."""

import datetime as dt

import pytest
from outbox_support import SqlSessions, events, published

from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.outbox.memory import MemoryOutbox
from cauldron_fabric.core.outbox.statements import FAILED, INVALID, PENDING, PUBLISHED, RECORDED
from cauldron_fabric.core.ports import OutboxAppend, Settlement
from conftest import TRICKY_TEXT, make_envelope


class MemorySessions:
	def __init__(self):
		self.outbox = MemoryOutbox()

	def open(self):
		return self.outbox.session()

	def append(self, entries):
		self.open().append(entries)

	def statuses(self):
		return self.open().statuses()

	def topics(self):
		return {seq: row.destination or None for seq, row in self.outbox.rows.items()}

	def close(self):
		pass


@pytest.fixture(params=["memory", "mariadb"])
def sessions(request):
	if request.param == "memory":
		backend = MemorySessions()
	else:
		backend = SqlSessions(*request.getfixturevalue("outbox_table"))
	yield backend
	backend.close()


def test_claim_returns_pending_records_oldest_first(sessions):
	sessions.append(events([("A", 3), ("B", 2)]))
	store = sessions.open()
	records = store.claim(10)
	assert [r.seq for r in records] == sorted(r.seq for r in records) and len(records) == 5
	assert [r.partition_key for r in records] == ["ToDo/A"] * 3 + ["ToDo/B"] * 2
	assert records[0].envelope_json.startswith('{"id":')
	store.release()


def test_stored_envelope_comes_back_byte_for_byte(sessions):
	# The envelope goes into the INSERT as a literal: quotes, backslashes, percent signs,
	# format markers, control characters and non-ASCII text must all survive unchanged.
	envelope = make_envelope("ToDo", "T-'%s\\", "updated", note=TRICKY_TEXT, nested={"k'%": [TRICKY_TEXT]})
	sessions.append([OutboxAppend(envelope)])
	store = sessions.open()
	(record,) = store.claim(10)
	assert record.envelope_json == envelope.to_json()
	assert record.partition_key == "ToDo/T-'%s\\"
	assert Envelope.from_json(record.envelope_json) == envelope
	store.release()


def test_recorded_and_invalid_events_are_never_claimed(sessions):
	sessions.append(
		[OutboxAppend(make_envelope(), pending=False), OutboxAppend(make_envelope(), invalid=True)]
	)
	store = sessions.open()
	assert store.claim(10) == []
	assert sorted(sessions.statuses().items()) == list(
		zip(sorted(sessions.statuses()), [RECORDED, INVALID], strict=True)
	)
	assert store.pending_count() == 0


def test_two_relays_never_hold_the_same_record(sessions):
	sessions.append(events([("A", 2), ("B", 2), ("C", 2)]))
	first, second = sessions.open(), sessions.open()
	held = first.claim(3)
	others = second.claim(10)
	assert {r.seq for r in held}.isdisjoint(r.seq for r in others)
	# Only C is free: A's second event waits behind A's first, which the first relay holds.
	assert {r.partition_key for r in others} == {"ToDo/C"}
	first.release()
	second.release()


def test_settled_records_are_not_claimed_again(sessions):
	sessions.append(events([("A", 2)]))
	store = sessions.open()
	store.settle(published(store.claim(10)))
	assert store.claim(10) == []
	assert set(sessions.statuses().values()) == {PUBLISHED}
	assert store.pending_count() == 0


def test_released_records_are_claimed_again(sessions):
	sessions.append(events([("A", 2)]))
	store = sessions.open()
	first = store.claim(10)
	store.release()
	assert [r.seq for r in sessions.open().claim(10)] == [r.seq for r in first]


def test_a_record_waiting_for_retry_holds_back_its_key_only(sessions):
	sessions.append(events([("A", 2), ("B", 1)]))
	store = sessions.open()
	a1, a2, b1 = store.claim(10)
	later = dt.datetime.now() + dt.timedelta(hours=1)
	store.settle(
		[Settlement(a1.seq, False, "t", error="broker down", retry_at=later), *published([a2, b1])[1:]]
	)
	# a2 was not settled as published above; it must stay blocked behind a1.
	assert store.claim(10) == []
	store.release()
	assert sessions.statuses()[a1.seq] == PENDING
	assert store.pending_count() == 2


@pytest.mark.parametrize("limit", [1, 3])
def test_a_waiting_key_with_a_backlog_does_not_starve_other_keys(sessions, limit):
	# One document's first event waits for its retry; its later events fill the first rows a
	# claim looks at. The claim must look past them to other documents.
	sessions.append(events([("A", 1)]))
	store = sessions.open()
	(a1,) = store.claim(10)
	store.settle(
		[
			Settlement(
				a1.seq, False, "t", error="broker down", retry_at=dt.datetime.now() + dt.timedelta(hours=1)
			)
		]
	)
	sessions.append(events([("A", 4), ("B", 2)]))
	claimed = store.claim(limit)
	assert [r.partition_key for r in claimed] == ["ToDo/B"] * min(limit, 2)
	store.release()


def test_due_retry_is_claimed_and_counts_attempts(sessions):
	sessions.append(events([("A", 1)]))
	store = sessions.open()
	(record,) = store.claim(10)
	earlier = dt.datetime.now() - dt.timedelta(seconds=1)
	store.settle([Settlement(record.seq, False, "t", error="timeout", retry_at=earlier)])
	(again,) = store.claim(10)
	assert again.seq == record.seq and again.attempts == 1
	store.release()


def test_a_record_held_back_unsent_counts_no_attempt(sessions):
	sessions.append(events([("A", 1)]))
	store = sessions.open()
	(record,) = store.claim(10)
	earlier = dt.datetime.now() - dt.timedelta(seconds=1)
	held = Settlement(record.seq, False, "t", error="Held back", retry_at=earlier, attempted=False)
	store.settle([held])
	(again,) = store.claim(10)
	assert again.seq == record.seq and again.attempts == 0
	store.settle(published([again]))
	assert sessions.statuses() == {record.seq: PUBLISHED}


def test_a_record_held_back_unsent_keeps_the_topic_it_last_went_to(sessions):
	sessions.append(events([("A", 1)]))
	store = sessions.open()
	(record,) = store.claim(10)
	earlier = dt.datetime.now() - dt.timedelta(seconds=1)
	store.settle([Settlement(record.seq, False, "cauldron.sales", error="timeout", retry_at=earlier)])
	(again,) = store.claim(10)
	held = Settlement(again.seq, False, "", error="Held back", retry_at=earlier, attempted=False)
	store.settle([held])
	assert sessions.topics() == {record.seq: "cauldron.sales"}


def test_permanent_failure_marks_failed_and_frees_the_key(sessions):
	sessions.append(events([("A", 2)]))
	store = sessions.open()
	a1, a2 = store.claim(10)
	store.settle([Settlement(a1.seq, False, "t", error="too large", permanent=True)])
	assert [r.seq for r in store.claim(10)] == [a2.seq]
	store.release()
	assert sessions.statuses()[a1.seq] == FAILED


def test_claim_limit_is_respected_and_order_kept_across_batches(sessions):
	sessions.append(events([("A", 7)]))
	store = sessions.open()
	seen = []
	while batch := store.claim(3):
		seen += [r.seq for r in batch]
		store.settle(published(batch))
	assert seen == sorted(seen) and len(seen) == 7


def test_claim_twice_without_settling_is_a_programming_error(sessions):
	sessions.append(events([("A", 1)]))
	store = sessions.open()
	store.claim(1)
	with pytest.raises(RuntimeError, match="without settle"):
		store.claim(1)
	store.release()


def test_settled_rows_passed_as_ahead_never_let_a_record_overtake(sessions):
	sessions.append([OutboxAppend(make_envelope("ToDo", "X", "updated")), *events([("K", 2)])])
	relay_one, relay_two, relay_one_again = sessions.open(), sessions.open(), sessions.open()
	(x1,) = relay_one.claim(1)
	relay_one.settle(published([x1]))
	(k1,) = relay_two.claim(1)
	assert k1.partition_key == "ToDo/K"
	# x1 is stale as "ahead" (already published); k2 must still wait for k1 held elsewhere.
	assert relay_one_again.claim(10, ahead=[x1.seq]) == []
	relay_two.release()
	assert [r.partition_key for r in relay_one_again.claim(10, ahead=[x1.seq])] == ["ToDo/K", "ToDo/K"]
	relay_one_again.release()
