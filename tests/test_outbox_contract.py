"""One contract for every OutboxStore adapter: the memory store and the MariaDB table."""

import datetime as dt
import time
from dataclasses import replace

import pytest

from cauldron_fabric.core.envelope import Envelope, EventData, EventMetadata
from cauldron_fabric.core.errors import InvalidEnvelope
from cauldron_fabric.core.outbox.memory import MemoryOutbox
from cauldron_fabric.core.outbox.sql import SqlOutboxStore, excluding
from cauldron_fabric.core.outbox.statements import FAILED, INVALID, PENDING, PUBLISHED, RECORDED, sql_literal
from cauldron_fabric.core.ports import OutboxAppend, Settlement
from cauldron_fabric.core.sqlsession import StoreUnavailable
from conftest import TRICKY_TEXT, connect_db, connect_db_without_backslash_escapes, make_envelope


class SqlSessions:
	"""Opens stores on one table; each store is one relay's connection."""

	def __init__(self, table, sequence):
		self.table, self.sequence = table, sequence
		self.opened = []

	def open(self):
		store = SqlOutboxStore(connect_db, table=self.table, sequence=self.sequence)
		self.opened.append(store)
		return store

	def append(self, entries):
		store = self.open()
		store.append(entries)
		store.commit()

	def statuses(self):
		conn = connect_db()
		with conn.cursor() as cur:
			cur.execute(f"SELECT name, status FROM `{self.table}`")
			rows = dict(cur.fetchall())
		conn.close()
		return {int(k): v for k, v in rows.items()}

	def topics(self):
		conn = connect_db()
		with conn.cursor() as cur:
			cur.execute(f"SELECT name, topic FROM `{self.table}`")
			rows = dict(cur.fetchall())
		conn.close()
		return {int(k): v for k, v in rows.items()}

	def close(self):
		for store in self.opened:
			store.close()


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


def events(keys_and_counts):
	return [
		OutboxAppend(make_envelope("ToDo", key, "updated", n=n))
		for key, count in keys_and_counts
		for n in range(count)
	]


def published(records):
	return [Settlement(r.seq, True, "topic", 0, i) for i, r in enumerate(records)]


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


def test_an_envelope_appended_without_backslash_escapes_comes_back_byte_for_byte(outbox_table):
	# The SQL mode decides how a literal is read: written as for the default mode, the quote
	# in the text would end the literal early.
	table, sequence = outbox_table
	envelope = make_envelope("ToDo", "T-'%s\\", "updated", note=TRICKY_TEXT)
	writer = SqlOutboxStore(connect_db_without_backslash_escapes, table=table, sequence=sequence)
	writer.append([OutboxAppend(envelope)])
	writer.commit()
	writer.close()
	store = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	(record,) = store.claim(10)
	assert record.envelope_json == envelope.to_json()
	assert record.partition_key == "ToDo/T-'%s\\"
	store.close()


@pytest.mark.parametrize("connect", [connect_db, connect_db_without_backslash_escapes])
def test_every_column_of_an_appended_row_is_stored_as_given(outbox_table, connect):
	# Every value goes into the INSERT as a literal, in either SQL mode.
	table, sequence = outbox_table
	envelope = replace(
		make_envelope("To'Do\\", TRICKY_TEXT, "updated"),
		metadata=EventMetadata(TRICKY_TEXT, "c'\\%s", "jane'o\\", "site%(x)s"),
		data_schema="urn:cauldron:schema:x'\\:1",
	)
	now = dt.datetime(2026, 1, 2, 3, 4, 5, 60)
	store = SqlOutboxStore(connect, table=table, sequence=sequence, clock=lambda: now)
	store.append([OutboxAppend(envelope, invalid=True, problem=TRICKY_TEXT)], actor="o'Brien\\%s")
	store.commit()
	store.close()
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT * FROM `{table}`")
		(row,) = cur.fetchall()
	conn.close()
	meta, data = envelope.metadata, envelope.data
	assert row[1:] == (
		now,
		now,
		"o'Brien\\%s",
		"o'Brien\\%s",
		0,
		0,
		envelope.id,
		envelope.type,
		envelope.source,
		envelope.time,
		envelope.data_schema,
		data.entity,
		data.entity_id,
		data.action,
		meta.correlation_id,
		meta.causation_id,
		meta.user_id,
		meta.tenant_id,
		envelope.partition_key,
		envelope.to_json(),
		INVALID,
		0,
		TRICKY_TEXT,
		None,
		None,
		None,
		0,
		0,
	)


def test_rows_appended_together_are_stamped_apart_in_their_id_order(outbox_table):
	# Desk lists the Event Log by creation: rows sharing one stamp have no order between them,
	# and a page boundary among them showed some rows twice and others never.
	table, sequence = outbox_table
	now = dt.datetime(2026, 1, 2, 3, 4, 5, 999_998)
	store = SqlOutboxStore(connect_db, table=table, sequence=sequence, clock=lambda: now)
	store.append([OutboxAppend(make_envelope("ToDo", f"T-{i}", "created")) for i in range(5)])
	store.commit()
	store.close()
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT creation, modified FROM `{table}` ORDER BY name")
		stamps = cur.fetchall()
		pages = []
		for start in range(0, 5, 2):
			cur.execute(f"SELECT name FROM `{table}` ORDER BY creation DESC LIMIT {start}, 2")
			pages += [int(name) for (name,) in cur.fetchall()]
		cur.execute(f"SELECT name FROM `{table}` ORDER BY name DESC")
		newest_first = [int(name) for (name,) in cur.fetchall()]
	conn.close()
	assert [creation for creation, _ in stamps] == [now + dt.timedelta(microseconds=i) for i in range(5)]
	assert all(creation == modified for creation, modified in stamps)
	assert pages == newest_first


def test_an_error_quoting_markup_is_kept_as_text_desk_cannot_run_as_html(outbox_table):
	# Desk renders an Event Log's last_error as HTML; a schema violation quotes the payload's
	# values and a broker's error its own text, so their markup would run in an admin's browser.
	table, sequence = outbox_table
	store = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	markup = "<img src=x onerror=alert(1)>"
	store.append([OutboxAppend(make_envelope("ToDo", "A"), invalid=True, problem=markup)])
	store.append([OutboxAppend(make_envelope("ToDo", "B"))])
	store.commit()
	(record,) = store.claim(10)
	store.settle([Settlement(record.seq, False, "t", error=markup, permanent=True)])
	store.close()
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT last_error FROM `{table}` ORDER BY name")
		errors = [error for (error,) in cur.fetchall()]
	conn.close()
	assert errors == ["\u2039img src=x onerror=alert(1)\u203a"] * 2


def test_a_text_too_long_for_its_column_is_refused_by_name_not_as_a_database_error(outbox_table):
	# from_dict checks the id and type only; any other attribute (an API publisher's source,
	# entity or correlation id) over the Event Log's 140 characters failed the INSERT itself.
	table, sequence = outbox_table
	store = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	cases = {
		"source": lambda text: replace(make_envelope(), source=text),
		"data.entityId": lambda text: replace(make_envelope(), data=EventData("ToDo", text, "updated")),
		"metadata.correlationId": lambda text: replace(make_envelope(), metadata=EventMetadata(text)),
		"dataSchema": lambda text: make_envelope().with_schema(text),
	}
	try:
		for label, build in cases.items():
			with pytest.raises(InvalidEnvelope, match=f"'{label}' is 141 characters long; at most 140"):
				store.append([OutboxAppend(build("ü" * 141))])
			store.append([OutboxAppend(build("ü" * 140))])
		store.commit()
	finally:
		store.close()
	assert len(SqlSessions(table, sequence).statuses()) == len(cases)


def test_a_value_of_another_type_is_refused_rather_than_written_unescaped():
	assert sql_literal(None) == "NULL" and sql_literal(True) == "1" and sql_literal(12) == "12"
	with pytest.raises(TypeError):
		sql_literal(["x'); DROP TABLE t; --"])


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


def test_a_claim_left_idle_too_long_goes_to_the_next_relay_and_its_settle_is_retryable(outbox_table):
	# A relay that froze holding a claim must not keep its rows from the others for hours.
	table, sequence = outbox_table
	writer = SqlSessions(table, sequence)
	writer.append(events([("A", 2)]))
	writer.close()
	frozen = SqlOutboxStore(connect_db, table=table, sequence=sequence, claim_idle_seconds=1)
	other = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	try:
		claimed = frozen.claim(10)
		assert other.claim(10) == []
		time.sleep(2.5)
		assert [r.seq for r in other.claim(10)] == [r.seq for r in claimed]
		other.settle(published(claimed))
		with pytest.raises(StoreUnavailable):
			frozen.settle(published(claimed))
		assert frozen.claim(10) == [] and frozen.pending_count() == 0  # a fresh connection works on
	finally:
		frozen.close()
		other.close()


def test_a_claim_that_fails_partway_leaves_no_retry_marks_for_the_next_one(outbox_table):
	# The rows a claim found retried decide how settle writes them; a claim that failed
	# after reading some must not hand its marks to the next claim's rows.
	table, sequence = outbox_table
	writer = SqlSessions(table, sequence)
	writer.append(events([("A", 3), ("B", 1)]))
	writer.close()
	earlier = dt.datetime.now() - dt.timedelta(seconds=1)
	calls = []

	def clock():
		calls.append(1)
		if len(calls) == 4:  # the look past the rows left out for A1, in the failing claim
			raise RuntimeError("clock broke")
		return dt.datetime.now()

	store = SqlOutboxStore(connect_db, table=table, sequence=sequence, clock=clock)
	other = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	try:
		a1, a2, a3, b1 = store.claim(10)
		store.settle([Settlement(r.seq, False, "t", error="down", retry_at=earlier) for r in (a1, a2, a3)])
		assert [r.seq for r in other.claim(1)] == [a1.seq]
		with pytest.raises(RuntimeError, match="clock broke"):
			store.claim(2)
		store.session.rollback()
		other.release()
		other.settle([Settlement(r.seq, True, "t") for r in other.claim(3)])
		assert [r.seq for r in store.claim(10)] == [b1.seq]
		assert store._retried == set()
		store.release()
	finally:
		store.close()
		other.close()


def test_excluded_ids_become_exact_ranges_or_one_list():
	# The order check leaves out the batch and the rows ahead of it; a range must never
	# cover an id that is not in the list, or it would hide another relay's row.
	assert excluding([]) == ""
	assert excluding([3, 4, 5, 9, 11, 12]) == (
		" AND name NOT BETWEEN 3 AND 5 AND name NOT BETWEEN 9 AND 9 AND name NOT BETWEEN 11 AND 12"
	)
	assert excluding([1, 3, 5, 7], max_runs=3) == " AND name NOT IN (1,3,5,7)"
