"""One contract for every TrackingStore adapter: process memory and a MariaDB table.

A session is one consumer's connection; its handler writes go through ``store.transaction``
and must commit or vanish together with the processed mark.
"""

import threading
import time
import uuid
from dataclasses import replace

import pytest

from cauldron_fabric.core.consumer.messages import InboundMessage
from cauldron_fabric.core.consumer.tracking_memory import MemoryTracking, MemoryTrackingStore
from cauldron_fabric.core.consumer.tracking_sql import SqlTrackingStore, TrackingUnavailable, create_table_sql
from cauldron_fabric.core.errors import RetryableError
from cauldron_fabric.core.markup import plain
from conftest import connect_db, make_envelope


class MemorySessions:
	def __init__(self):
		self.tracking = MemoryTracking()

	def open(self, lock_wait=10.0):
		return MemoryTrackingStore(self.tracking, lock_wait=lock_wait)

	def write(self, store, value):
		store.transaction.append(value)

	def effects(self):
		return list(self.tracking.effects)

	def close(self):
		pass


class SqlSessions:
	"""Sessions on a fresh tracking table, plus an effects table the handler writes to."""

	def __init__(self):
		suffix = uuid.uuid4().hex[:8]
		self.table, self.sequence, self.effects_table = (
			f"tabProcessed Event {suffix}",
			f"processed_event_{suffix}_seq",
			f"effects_{suffix}",
		)
		self.opened = []
		conn = connect_db()
		with conn.cursor() as cur:
			for statement in create_table_sql(self.table, self.sequence):
				cur.execute(statement)
			cur.execute(f"CREATE TABLE `{self.effects_table}` (value varchar(140)) ENGINE=InnoDB")
		conn.commit()
		conn.close()

	def open(self, lock_wait=10.0):
		store = SqlTrackingStore(
			connect_db, table=self.table, sequence=self.sequence, lock_wait_seconds=int(lock_wait)
		)
		self.opened.append(store)
		return store

	def write(self, store, value):
		with store.transaction.cursor() as cur:
			cur.execute(f"INSERT INTO `{self.effects_table}` (value) VALUES (%s)", (value,))

	def effects(self):
		conn = connect_db()
		with conn.cursor() as cur:
			cur.execute(f"SELECT value FROM `{self.effects_table}`")
			rows = [row[0] for row in cur.fetchall()]
		conn.close()
		return rows

	def close(self):
		for store in self.opened:
			store.close()
		conn = connect_db()
		with conn.cursor() as cur:
			cur.execute(f"DROP TABLE IF EXISTS `{self.table}`, `{self.effects_table}`")
			cur.execute(f"DROP SEQUENCE IF EXISTS `{self.sequence}`")
		conn.commit()
		conn.close()


@pytest.fixture(params=["memory", "mariadb"])
def sessions(request):
	if request.param == "mariadb":
		request.getfixturevalue("database")
	backend = MemorySessions() if request.param == "memory" else SqlSessions()
	yield backend
	backend.close()


def test_the_mark_and_the_effect_commit_together_and_only_once(sessions):
	event = make_envelope()
	store, observer = sessions.open(), sessions.open()
	store.begin()
	assert store.claim("billing", event)
	sessions.write(store, "charged")
	assert not observer.is_processed("billing", event.id) and sessions.effects() == []
	store.commit()
	assert observer.is_processed("billing", event.id) and sessions.effects() == ["charged"]
	store.begin()
	assert not store.claim("billing", event), "a redelivered event must not be claimed twice"
	store.rollback()
	store.begin()
	assert store.claim("shipping", event), "another group processes the same event on its own"
	store.commit()
	assert sessions.effects() == ["charged"]


def test_replies_kept_with_the_mark_commit_with_it_and_vanish_with_a_rollback(sessions):
	request, failed = make_envelope(), make_envelope()
	reply = replace(make_envelope(answer="x" * 70_000), type="todo.updated.reply")  # beyond a TEXT column
	store, observer = sessions.open(), sessions.open()
	store.begin()
	assert store.claim("pricing", request)
	store.keep_replies("pricing", request.id, [reply])
	assert observer.kept_replies("pricing", request.id) == [], "nothing shows before the commit"
	store.commit()
	assert observer.kept_replies("pricing", request.id) == [reply]
	assert observer.kept_replies("billing", request.id) == [], "another group's mark keeps its own"

	store.begin()
	assert store.claim("pricing", failed)
	store.keep_replies("pricing", failed.id, [reply])
	store.rollback()
	assert observer.kept_replies("pricing", failed.id) == []
	store.begin()
	assert store.claim("pricing", failed)
	store.commit()
	assert observer.kept_replies("pricing", failed.id) == [], "a mark without replies keeps none"


def test_a_rollback_leaves_neither_mark_nor_effect(sessions):
	event = make_envelope()
	store = sessions.open()
	store.begin()
	assert store.claim("billing", event)
	sessions.write(store, "half done")
	store.rollback()
	assert not sessions.open().is_processed("billing", event.id) and sessions.effects() == []
	store.begin()
	assert store.claim("billing", event)
	sessions.write(store, "done")
	store.commit()
	assert sessions.effects() == ["done"]


def test_a_second_consumer_waits_for_the_first_and_then_skips_the_event(sessions):
	"""The rebalance case: two members hold the same event at once; only one effect results."""
	event = make_envelope()
	first, second = sessions.open(), sessions.open()
	first.begin()
	assert first.claim("billing", event)
	sessions.write(first, "first")
	outcome = {}

	def race():
		second.begin()
		started = time.monotonic()
		outcome["claimed"] = second.claim("billing", event)
		outcome["waited"] = time.monotonic() - started
		second.rollback()

	thread = threading.Thread(target=race)
	thread.start()
	time.sleep(0.4)
	first.commit()
	thread.join(10)
	assert outcome["claimed"] is False and outcome["waited"] >= 0.3
	assert sessions.effects() == ["first"]


def test_the_waiting_consumer_takes_over_when_the_first_rolls_back(sessions):
	event = make_envelope()
	first, second = sessions.open(), sessions.open()
	first.begin()
	assert first.claim("billing", event)
	outcome = {}

	def race():
		second.begin()
		outcome["claimed"] = second.claim("billing", event)
		sessions.write(second, "second")
		second.commit()

	thread = threading.Thread(target=race)
	thread.start()
	time.sleep(0.3)
	first.rollback()
	thread.join(10)
	assert outcome == {"claimed": True} and sessions.effects() == ["second"]


def test_an_event_held_too_long_is_a_retryable_error(sessions):
	event = make_envelope()
	first, second = sessions.open(), sessions.open(lock_wait=1)
	first.begin()
	assert first.claim("billing", event)
	second.begin()
	with pytest.raises(RetryableError, match="billing"):
		second.claim("billing", event)
	second.rollback()
	first.commit()


def test_an_unreachable_database_is_a_retryable_error(database):
	def refuse():
		raise ConnectionRefusedError("MariaDB is down (injected at connect)")

	store = SqlTrackingStore(refuse)
	store.begin()
	with pytest.raises(TrackingUnavailable, match="Cannot connect to the tracking database"):
		store.claim("billing", make_envelope())


def test_a_table_from_before_replies_were_kept_gets_the_column_and_its_marks_keep_none(database):
	sessions = SqlSessions()
	event = make_envelope()
	try:
		conn = connect_db()
		with conn.cursor() as cur:
			cur.execute(f"ALTER TABLE `{sessions.table}` DROP COLUMN `replies`")
		conn.commit()
		store = sessions.open()
		store.begin()
		assert store.claim("pricing", event)
		store.commit()
		with conn.cursor() as cur:
			for statement in create_table_sql(sessions.table, sessions.sequence):
				cur.execute(statement)
		conn.commit()
		conn.close()
		assert sessions.open().kept_replies("pricing", event.id) == []
	finally:
		sessions.close()


def test_an_origin_with_markup_is_marked_with_look_alike_brackets(database):
	# A RabbitMQ routing key, or a fabric-origin-topic header any producer may set, is kept in
	# a column Desk renders as HTML, written by SQL that Frappe's sanitizing save never sees.
	sessions = SqlSessions()
	event = make_envelope()
	topic = "orders.<img src=x onerror=alert(1)>"
	try:
		store = sessions.open()
		store.begin()
		assert store.claim("billing", event, InboundMessage(topic, 0, 7, None, b"{}"))
		store.commit()
		conn = connect_db()
		with conn.cursor() as cur:
			cur.execute(f"SELECT origin_topic, origin_offset FROM `{sessions.table}`")
			marked = cur.fetchall()
		conn.close()
		assert marked == ((plain(topic), 7),)
	finally:
		sessions.close()
