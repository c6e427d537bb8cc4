"""An event whose handler kills the consumer process is set aside instead of blocking for ever.

Each worker process counts its handler runs in Redis; the handler of one event calls os._exit,
as an out-of-memory kill or a crash in a C extension would end it. Without the count every
restart would meet that event first and die again, and nothing behind it would move.
"""

import signal
import time
import uuid

import redis
from consumer_buses import Worker, bus_fixture, tables_fixture, wait_for, wire  # noqa: F401
from test_consumer_groups import effect_rows

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable
from cauldron_fabric.core.consumer.crashes_redis import RedisCrashCounter
from cauldron_fabric.core.consumer.messages import DEAD_LETTER_REASON, EXCEPTION_MESSAGE, HANDLER_CRASHED
from cauldron_fabric.core.consumer.tracking_memory import MemoryTracking, MemoryTrackingStore
from cauldron_fabric.core.retry import Backoff
from conftest import make_envelope

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_an_event_that_kills_its_consumer_three_times_is_dead_lettered_and_the_rest_flow(bus, tables):
	(tracking, effects), channel = tables, bus.channel()
	group = f"crash-{uuid.uuid4().hex[:6]}"
	prefix = f"fabric-test:{uuid.uuid4().hex[:8]}:"
	# One document, so one partition: the events after the poison wait behind it.
	before, poison, *after = [make_envelope("Item", "I-1", "updated", n=n) for n in range(4)]
	good = {before.id, *(e.id for e in after)}
	env = {"CRASH_PREFIX": prefix, "CRASH_ON": poison.id}

	def all_good_handled():
		return {row[0] for row in effect_rows(effects)} >= good

	exits, workers = [], []
	try:
		while True:
			worker = Worker(bus, group, channel, tracking, effects, f"w{len(workers)}", env=env)
			workers.append(worker)
			if len(workers) == 1:
				worker.wait_for("ready")
				bus.publish(channel, [wire(e) for e in (before, poison, *after)])
			assert wait_for(lambda w=worker: w.process.poll() is not None or all_good_handled(), 60)
			if worker.process.poll() is None:
				break
			exits.append(worker.process.returncode)
			assert len(exits) <= 3, f"the poison kept killing the consumer: exits {exits}"
		survivor = workers[-1]
		survivor.process.send_signal(signal.SIGTERM)
		assert survivor.process.wait(20) == 0
	finally:
		for worker in workers:
			worker.kill()
	assert exits == [70, 70, 70], "three runs died in the handler before the event was set aside"
	handled = [row[0] for row in effect_rows(effects)]
	assert sorted(handled) == sorted(good), "every other event was handled once, the poison never"
	(headers, body), *_ = bus.dead_letters(group, 1)
	assert headers[DEAD_LETTER_REASON] == HANDLER_CRASHED
	assert "stopped 3 times" in headers[EXCEPTION_MESSAGE]
	assert body == poison.to_json().encode()
	assert redis.Redis.from_url(REDIS_URL).keys(f"{prefix}*") == [], "finished runs leave no count"
	assert bus.lag(group, channel) == 0


def test_without_redis_the_consumer_goes_on_uncounted(kafka):
	from consumer_buses import KafkaBus

	bus = KafkaBus(kafka)
	channel = bus.channel()
	sent = [make_envelope("Item", f"I-{n}", "created", n=n) for n in range(3)]
	bus.publish(channel, [wire(e) for e in sent])
	options = ConsumerOptions(group=f"no-redis-{uuid.uuid4().hex[:6]}", poll_timeout=0.2)
	seen = []
	counter = RedisCrashCounter("redis://127.0.0.1:1/0")  # nothing listens there
	consumer = Consumer(
		bus.source(options, channel),
		HandlerTable.from_mapping({"**": lambda envelope, context: seen.append(envelope.id)}),
		MemoryTrackingStore(),
		options,
		crashes=counter,
	)
	try:
		consumer.run(max_seconds=30, stop_when_idle=True)
	finally:
		consumer.close()
	assert sorted(seen) == sorted(e.id for e in sent)


def test_a_run_that_returned_is_no_crash_for_the_member_that_takes_the_retry(bus):
	"""A handler that failed and returned is forgotten before its member's next round.

	Its member may be killed (a deployment's SIGKILL, an out-of-memory kill caused elsewhere) or
	keep polling events nobody here handles; the retry copy then goes to another member, which
	must not count the earlier, finished run as one the process did not survive.
	"""
	channel = bus.channel()
	group = f"crash-{uuid.uuid4().hex[:6]}"
	prefix = f"fabric-test:{uuid.uuid4().hex[:8]}:"
	options = ConsumerOptions(
		group=group, crash_limit=1, backoff=Backoff(2.0, 2.0, 2.0, 0.0), poll_timeout=0.2
	)
	failing = make_envelope("Item", "I-1", "updated")
	others = [make_envelope("Item", "I-1", "created", n=n) for n in range(3)]  # nobody handles these
	tracking, ran = MemoryTracking(), []

	def handler(envelope, context):
		ran.append(context.attempt)
		if context.attempt == 1:
			raise RuntimeError("the receiving system said try later")

	table = HandlerTable.from_mapping({"item.updated": handler})

	def member() -> Consumer:
		"""A member of the group: its own source and crash counter, the group's processed marks."""
		source = bus.source(options, channel)
		counter = RedisCrashCounter(REDIS_URL, prefix)
		return Consumer(source, table, MemoryTrackingStore(tracking), options, crashes=counter)

	first = member()
	bus.publish(channel, [wire(e) for e in (failing, *others)])
	deadline = time.monotonic() + 30
	while time.monotonic() < deadline:
		first.consume_round()
		counts = first.stats.totals()
		if counts.retried and counts.ignored == len(others):
			break
	assert first.stats.totals().retried == 1, first.stats.totals()
	first.source.close()  # the member is gone: killed after that round, its counter untouched

	second = member()
	try:
		second.run(lambda: bool(second.stats.totals().processed or second.stats.totals().dead_lettered), 30)
	finally:
		second.close()
	assert ran == [1, 2], f"no run of this event ever killed a process: {second.stats.totals()}"
	assert second.stats.totals().dead_lettered == 0


def test_runs_finished_while_redis_is_down_leave_nothing_to_delete_later():
	# Nothing was counted during the outage, so nothing piles up to delete when Redis is back.
	counter = RedisCrashCounter("redis://127.0.0.1:1/0")  # nothing listens there
	for n in range(200):
		assert counter.started("g", f"e-{n}") == 0
		counter.finished("g", f"e-{n}")
	assert counter._forget == []
	counter.close()
	live = RedisCrashCounter(REDIS_URL, prefix=f"fabric-test:{uuid.uuid4().hex[:8]}:")
	assert live.started("g", "e-1") == 0
	live.finished("g", "e-1")
	live.flush()
	assert live.client.keys(f"{live.prefix}*") == [], "a counted run that finished is deleted"
	live.close()
