"""What the MariaDB outbox table alone promises: every column stored as given under either SQL
mode, texts refused by name, and claims that a frozen or failing relay cannot keep.
"""

import datetime as dt
import time
from dataclasses import replace

import pytest
from outbox_support import SqlSessions, events, published

from cauldron_fabric.core.envelope import EventData, EventMetadata
from cauldron_fabric.core.errors import InvalidEnvelope
from cauldron_fabric.core.outbox.sql import SqlOutboxStore, excluding
from cauldron_fabric.core.outbox.statements import INVALID, sql_literal
from cauldron_fabric.core.ports import OutboxAppend, Settlement
from cauldron_fabric.core.sqlsession import StoreUnavailable
from conftest import TRICKY_TEXT, connect_db, connect_db_without_backslash_escapes, make_envelope


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
