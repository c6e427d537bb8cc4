"""Consumer groups on each real bus, with processes, MariaDB tracking, SIGTERM and SIGKILL.

Each worker process writes one effect row per event in the same transaction as its processed
mark; the effects table has no unique key, so a second effect of an event would show.
"""

import datetime as dt
import json
import signal
import threading
import uuid

import pymysql
import pytest
from consumer_buses import Worker, bus_fixture, tables_fixture, wait_for, wire  # noqa: F401

from cauldron_fabric.core.consumer import (
	Consumer,
	ConsumerCounts,
	ConsumerOptions,
	HandlerTable,
	ResponderFailed,
	open_requester,
)
from cauldron_fabric.core.consumer.messages import TRACKING_REFUSED
from cauldron_fabric.core.consumer.tracking_sql import SqlTrackingStore, insert_mark_sql, mark_values
from cauldron_fabric.core.retry import Backoff
from conftest import connect_db, make_envelope


def effect_rows(effects):
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute(f"SELECT event_id, worker, part FROM `{effects}`")
		rows = cur.fetchall()
	conn.close()
	return rows


def kill_session(cursor):
	"""Kills the database session ``cursor`` belongs to, from another connection."""
	cursor.execute("SELECT CONNECTION_ID()")
	(connection_id,) = cursor.fetchone()
	admin = connect_db()
	with admin.cursor() as cur:
		cur.execute(f"KILL CONNECTION {int(connection_id)}")
	admin.close()


def insert_effect(cursor, effects, envelope):
	"""Writes a handler's effect row for ``envelope`` in the handler's transaction."""
	cursor.execute(
		f"INSERT INTO `{effects}` (event_id, worker, part) VALUES (%s, 'in-process', 0)", (envelope.id,)
	)


def events(count):
	return [make_envelope("Item", f"I-{n % 13}", "created", n=n) for n in range(count)]


def stats_of(worker):
	return json.loads(worker.wait_for("stats ", 20).split(" ", 1)[1])


def lettered_consumer(source, store, options, handler):
	"""Returns a consumer running ``handler`` for every event, and the list its dead letters go to."""
	letters = []
	handlers = HandlerTable.from_mapping({"**": handler})
	return Consumer(source, handlers, store, options, on_dead_letter=letters.append), letters


def test_two_processes_split_the_group_and_leave_it_cleanly_on_sigterm(bus, tables):
	(tracking, effects), channel = tables, bus.channel()
	group = f"split-{uuid.uuid4().hex[:6]}"
	workers = [Worker(bus, group, channel, tracking, effects, name) for name in ("a", "b")]
	try:
		for worker in workers:
			worker.wait_for("ready")
		sent = events(40)
		bus.publish(channel, [wire(e) for e in sent])
		assert wait_for(lambda: len(effect_rows(effects)) >= 40, 30), "not every event was handled"
		for worker in workers:
			worker.process.send_signal(signal.SIGTERM)
		assert [worker.process.wait(20) for worker in workers] == [0, 0], (
			"SIGTERM must end the workers cleanly"
		)
	finally:
		for worker in workers:
			worker.kill()
	rows = effect_rows(effects)
	assert sorted(r[0] for r in rows) == sorted(e.id for e in sent), "each event has exactly one effect"
	by_worker = {name: [r for r in rows if r[1] == name] for name in ("a", "b")}
	assert by_worker["a"] and by_worker["b"], (
		f"both members must share the work: {[len(v) for v in by_worker.values()]}"
	)
	stats = [stats_of(worker) for worker in workers]
	assert sum(s["processed"] for s in stats) == 40 and sum(s["duplicates"] for s in stats) == 0
	if bus.name == "kafka":
		parts = [set(s["partitions"]) for s in stats]
		assert not parts[0] & parts[1], "a partition belongs to one member at a time"
	assert bus.lag(group, channel) == 0, "everything handled was committed (or acked) before leaving"


def test_sigkill_between_the_database_commit_and_the_offset_commit_changes_nothing_twice(bus, tables):
	(tracking, effects), channel = tables, bus.channel()
	group = f"killed-{uuid.uuid4().hex[:6]}"
	sent = events(6)
	doomed = Worker(bus, group, channel, tracking, effects, "doomed", hold_after=3)
	try:
		doomed.wait_for("ready")
		bus.publish(channel, [wire(e) for e in sent])
		held = doomed.wait_for("committed ").split(" ", 1)[1]
		assert held in {row[0] for row in effect_rows(effects)}, "the held event's effect is committed"
		doomed.kill()  # SIGKILL: no offset commit, no ack, no goodbye to the group
	finally:
		doomed.kill()
	survivor = Worker(bus, group, channel, tracking, effects, "survivor")
	try:
		assert wait_for(lambda: len({r[0] for r in effect_rows(effects)}) == 6, 40), "the survivor took over"
		survivor.process.send_signal(signal.SIGTERM)
		assert survivor.process.wait(20) == 0
	finally:
		survivor.kill()
	rows = effect_rows(effects)
	assert sorted(r[0] for r in rows) == sorted(e.id for e in sent), "no event changed anything twice"
	stats = stats_of(survivor)
	assert stats["duplicates"] >= 1, "the held event came again and was recognised as processed"
	assert stats["processed"] + 3 == 6
	assert bus.lag(group, channel) == 0


@pytest.mark.parametrize("refused", [False, True], ids=["reply", "failed-reply"])
def test_a_reply_lost_to_a_sigkill_after_the_commit_is_sent_again_to_the_redelivered_request(
	bus, tables, refused
):
	"""The responder commits the request's effect and dies before replying; its successor
	finds the request processed and sends the reply the first run kept, not nothing."""
	(tracking, effects), channel = tables, bus.channel()
	group = f"replay-{uuid.uuid4().hex[:6]}"
	options = {"exchange": channel} if bus.name == "amqp" else {"reply_topic": f"{channel}.replies"}
	requester = open_requester(bus.url, source="urn:test:requester", broker_options=options)
	target = channel if bus.name == "kafka" else "quote.price.requested"
	answers = []

	def ask():
		try:
			answers.append(requester.request("quote.price.requested", {"fail": refused}, 30, target=target))
		except Exception as exc:
			answers.append(exc)

	asking = threading.Thread(target=ask, daemon=True)
	doomed = Worker(bus, group, channel, tracking, effects, "doomed", hold_after=1)
	survivor = None
	try:
		doomed.wait_for("ready")
		asking.start()
		held = doomed.wait_for("committed ").split(" ", 1)[1]
		doomed.kill()  # SIGKILL after the commit: neither the reply nor the offset/ack went out
		survivor = Worker(bus, group, channel, tracking, effects, "survivor")
		asking.join(40)
		survivor.process.send_signal(signal.SIGTERM)
		assert survivor.process.wait(20) == 0
	finally:
		doomed.kill()
		if survivor is not None:
			survivor.kill()
		requester.close()
	(answer,) = answers
	if refused:
		assert isinstance(answer, ResponderFailed), answer
		assert "doomed has no price list" in str(answer), "the failure the first run answered"
		reply = answer.reply
	else:
		assert not isinstance(answer, Exception), f"the requester got no reply: {answer}"
		assert answer.payload == {"worker": "doomed"}, "the reply the first run kept, sent again"
		reply = answer.envelope
	assert reply.metadata.causation_id == held
	assert [r[:2] for r in effect_rows(effects)] == [(held, "doomed")], "the request changed nothing twice"
	assert stats_of(survivor)["duplicates"] == 1


def run_until_every_effect(consumer, effects, sent) -> ConsumerCounts:
	"""Runs the consumer until every sent event has its effect (30 s at most), closes it, checks
	each effect is there once and returns the consumer's totals."""
	try:
		consumer.run(lambda: len(effect_rows(effects)) >= len(sent), max_seconds=30)
		totals = consumer.stats.totals()
	finally:
		consumer.close()
	assert sorted(r[0] for r in effect_rows(effects)) == sorted(e.id for e in sent)
	return totals


def test_a_database_outage_defers_the_events_and_loses_none(bus, tables):
	"""The consumer's session is killed, then the database refuses connections twice."""
	(tracking, effects), channel = tables, bus.channel()
	options = ConsumerOptions(group=f"outage-{uuid.uuid4().hex[:6]}", outage_backoff=Backoff(0.3, 2, 1, 0))
	source = bus.source(options, channel)
	refusals = [0]

	def connect():
		if refusals[0]:
			refusals[0] -= 1
			raise pymysql.err.OperationalError(2003, "Can't connect to MariaDB (refused while it is down)")
		return connect_db()

	store = SqlTrackingStore(connect, table=tracking[0], sequence=tracking[1])
	with store.transaction.cursor() as cur:
		refusals[0] = 2  # from now on the database is down for the next two connection attempts
		kill_session(cur)

	def record_effect(envelope, context):
		with context.transaction.cursor() as cur:
			insert_effect(cur, effects, envelope)

	consumer = Consumer(source, HandlerTable.from_mapping({"**": record_effect}), store, options)
	sent = events(5)
	bus.publish(channel, [wire(e) for e in sent])
	totals = run_until_every_effect(consumer, effects, sent)
	assert totals.deferred == 2 and totals.processed == 5, totals
	assert totals.dead_lettered == 0 and totals.retried == 0


def test_a_connection_lost_inside_a_handler_is_an_outage_not_a_failed_attempt(bus, tables):
	# The database goes away while the handler writes: the event waits like any outage
	# instead of using up one of its attempts (which, through a long outage, dead-letters
	# healthy events).
	(tracking, effects), channel = tables, bus.channel()
	options = ConsumerOptions(group=f"lost-{uuid.uuid4().hex[:6]}", outage_backoff=Backoff(0.3, 2, 1, 0))
	source = bus.source(options, channel)
	store = SqlTrackingStore(connect_db, table=tracking[0], sequence=tracking[1])
	killed = []

	def record_effect(envelope, context):
		with context.transaction.cursor() as cur:
			if not killed:
				kill_session(cur)
				killed.append(envelope.id)
			insert_effect(cur, effects, envelope)

	consumer = Consumer(source, HandlerTable.from_mapping({"**": record_effect}), store, options)
	sent = events(3)
	bus.publish(channel, [wire(e) for e in sent])
	totals = run_until_every_effect(consumer, effects, sent)
	assert killed, "the connection was never killed"
	assert totals.deferred >= 1 and totals.retried == 0 and totals.failed == 0, totals


def test_a_connection_lost_during_the_schema_check_is_an_outage_not_a_stopped_consumer(bus, tables):
	# The site's schema check reads the registry on the consumer's database connection, before
	# the event's unit of work begins. When that connection went away during the check, the
	# driver's error came out of the consumer and stopped it, instead of deferring the event
	# as in any other database outage.
	(tracking, effects), channel = tables, bus.channel()
	options = ConsumerOptions(group=f"check-{uuid.uuid4().hex[:6]}", outage_backoff=Backoff(0.3, 2, 1, 0))
	store = SqlTrackingStore(connect_db, table=tracking[0], sequence=tracking[1])
	killed = []

	def check_with_the_registry(envelope):
		with store.transaction.cursor() as cur:
			if not killed:
				kill_session(cur)
				killed.append(envelope.id)
			cur.execute("SELECT 1")
		return envelope

	def record_effect(envelope, context):
		with context.transaction.cursor() as cur:
			insert_effect(cur, effects, envelope)

	consumer = Consumer(
		bus.source(options, channel),
		HandlerTable.from_mapping({"**": record_effect}),
		store,
		options,
		validate=check_with_the_registry,
	)
	sent = events(3)
	bus.publish(channel, [wire(e) for e in sent])
	totals = run_until_every_effect(consumer, effects, sent)
	assert killed, "the connection was never killed"
	assert totals.deferred >= 1 and totals.dead_lettered == 0 and totals.failed == 0, totals


def test_a_mark_another_member_still_holds_past_the_lock_wait_is_an_outage_not_a_dead_letter(bus, tables):
	# A redelivered event (a rebalance while its first run goes on) waits on the first run's
	# uncommitted mark. Past the lock wait it is an outage: deferred, never a dead letter, and
	# processed once the first run gives it up.
	(tracking, effects), channel = tables, bus.channel()
	group = f"held-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(group=group, outage_backoff=Backoff(0.3, 2, 1, 0))
	source = bus.source(options, channel)
	store = SqlTrackingStore(connect_db, table=tracking[0], sequence=tracking[1], lock_wait_seconds=1)
	(event,) = events(1)
	first_run = connect_db()  # the other member, its handler still running
	with first_run.cursor() as cur:
		cur.execute(
			insert_mark_sql(*tracking), mark_values(group, event, None, "Administrator", dt.datetime.now())
		)

	def record_effect(envelope, context):
		with context.transaction.cursor() as cur:
			insert_effect(cur, effects, envelope)

	consumer, letters = lettered_consumer(source, store, options, record_effect)
	bus.publish(channel, [wire(event)])
	try:
		consumer.run(lambda: consumer.stats.totals().deferred >= 2, max_seconds=30)
		first_run.rollback()  # its handler failed: the event is this member's to process
		totals = run_until_every_effect(consumer, effects, [event])
	finally:
		first_run.close()
	assert letters == []
	assert totals.deferred >= 2 and totals.processed == 1 and totals.dead_lettered == 0, totals


def test_a_mark_the_database_refuses_for_good_is_a_dead_letter_retry_can_send(bus, tables):
	# It was filed as invalid-envelope, which Retry refuses ("not an event; retrying cannot fix
	# it"): the event is sound, and once the cause is fixed a Retry must be able to send it.
	(tracking, _effects), channel = tables, bus.channel()
	options = ConsumerOptions(group=f"refused-{uuid.uuid4().hex[:6]}", outage_backoff=Backoff(0.3, 2, 1, 0))
	source = bus.source(options, channel)
	admin = connect_db()
	with admin.cursor() as cur:  # a column too short for the event's type, in strict mode
		cur.execute(f"ALTER TABLE `{tracking[0]}` MODIFY event_type varchar(3)")
	admin.close()
	store = SqlTrackingStore(connect_db, table=tracking[0], sequence=tracking[1])
	consumer, letters = lettered_consumer(source, store, options, lambda envelope, context: None)
	bus.publish(channel, [wire(e) for e in events(1)])
	try:
		consumer.run(lambda: bool(letters), max_seconds=30)
	finally:
		consumer.close()
	(letter,) = letters
	assert letter.failure.reason == TRACKING_REFUSED
	assert "Data too long for column 'event_type'" in letter.failure.message


def test_a_lock_wait_inside_a_handler_is_an_outage_not_a_failed_attempt(bus, tables):
	# A row the handler writes is locked by another transaction past the lock wait: the
	# database refused the handler for now, and the event waits like any outage instead of
	# using up its attempts (three such waits in a row dead-lettered a healthy event).
	(tracking, effects), channel = tables, bus.channel()
	options = ConsumerOptions(
		group=f"locked-{uuid.uuid4().hex[:6]}", max_attempts=2, outage_backoff=Backoff(0.3, 2, 1, 0)
	)
	source = bus.source(options, channel)
	store = SqlTrackingStore(connect_db, table=tracking[0], sequence=tracking[1], lock_wait_seconds=1)
	holder = connect_db()  # another process, holding the row
	with holder.cursor() as cur:
		cur.execute(f"INSERT INTO `{effects}` (event_id, worker, part) VALUES ('lock', 'holder', 0)")
	holder.commit()
	with holder.cursor() as cur:
		cur.execute(f"SELECT * FROM `{effects}` WHERE event_id = 'lock' FOR UPDATE")

	def record_effect(envelope, context):
		with context.transaction.cursor() as cur:
			cur.execute(f"UPDATE `{effects}` SET part = part + 1 WHERE event_id = 'lock'")
			insert_effect(cur, effects, envelope)

	consumer, letters = lettered_consumer(source, store, options, record_effect)
	sent = events(1)
	bus.publish(channel, [wire(e) for e in sent])
	try:
		consumer.run(lambda: consumer.stats.totals().deferred >= 3, max_seconds=30)
		holder.rollback()  # releases the row
		consumer.run(lambda: len(effect_rows(effects)) >= 2, max_seconds=30)
		totals = consumer.stats.totals()
	finally:
		consumer.close()
		holder.close()
	assert letters == []
	assert totals.deferred >= 3 and totals.retried == 0 and totals.processed == 1, totals
	assert sorted(r[0] for r in effect_rows(effects)) == sorted(["lock", sent[0].id])
