"""The Kafka consumer through a link that dies between a handler's commit and the offset commit,
and an offset commit whose answer is lost: the event comes again, a duplicate that the tracking
store skips, its effect not made twice (kafka_consumer_fault_support lowers the timeouts).

What holds: nothing is lost (every event's effect is committed and the group's lag reaches 0);
each event's effect is committed once, a redelivery being a duplicate the tracking store skips;
the consumer neither crashes nor logs tracebacks.
"""

import json
import time
import uuid
from collections import Counter
from types import SimpleNamespace

from consumer_buses import (
	Worker,
	tables_fixture,  # noqa: F401 (a fixture)
	wait_for,
)
from fault_proxy import kafka_behind_proxy_fixture, kafka_link_fixture  # noqa: F401 (fixtures)
from kafka_consumer_fault_support import (
	effects_once,
	items,
	link_fixture,  # noqa: F401 (a fixture)
	new_topic,
	publish,
	recording,
	running_consumer,
	tracebacks_fixture,  # noqa: F401 (a fixture)
)
from tcp_proxy import OFFSET_COMMIT

from conftest import connect_db


def test_link_that_dies_between_the_effect_and_the_offset_commit_redelivers_as_a_duplicate(
	link, tables, tracebacks
):
	# Member A (a process, SQL tracking) commits event 5's effect; then its link goes half-open
	# before the offset is stored or committed, and the process dies. Member B gets the
	# partitions from the committed offsets: event 5 (and any uncommitted tail) comes again and
	# is skipped as a duplicate by the tracking store, its effect not made twice.
	tracking, effects = tables
	topic, events, group = new_topic(link), items(12), f"faults-{uuid.uuid4().hex[:6]}"
	publish(link, topic, events)
	bus = SimpleNamespace(url=link.url)
	first = Worker(bus, group, topic, tracking, effects, "A", hold_after=5)
	try:
		first.wait_for("committed", 30)
		link.proxy.half_open()
		first.kill()
		second = Worker(bus, group, topic, tracking, effects, "B")
		try:
			assert wait_for(lambda: effect_count(effects) >= 12, 25), effect_count(effects)
			second.process.terminate()
			stats = json.loads(second.wait_for("stats", 15).split(" ", 1)[1])
		finally:
			second.kill()
	finally:
		first.kill()
	counts = effect_counts(effects)
	assert counts == Counter({e.id: 1 for e in events}), {k: v for k, v in counts.items() if v != 1}
	assert stats["duplicates"] >= 1, stats
	print(f"commit lost: B handled {stats['processed']}, skipped {stats['duplicates']} duplicates")


def effect_counts(effects) -> Counter:
	conn = connect_db()
	try:
		with conn.cursor() as cur:
			cur.execute(f"SELECT event_id, COUNT(*) FROM `{effects}` GROUP BY event_id")
			return Counter(dict(cur.fetchall()))
	finally:
		conn.close()


def effect_count(effects) -> int:
	return sum(effect_counts(effects).values())


def test_offset_commit_whose_answer_is_lost_redelivers_as_a_duplicate(link, tracebacks):
	proxy, topic, events, runs, faulted = link.proxy, new_topic(link), items(12), [], []

	def arm_after_five(count, _envelope, _context):
		if count == 5:
			proxy.fault_after_request(
				OFFSET_COMMIT, lambda: (faulted.append(time.monotonic()), proxy.stall())
			)

	publish(link, topic, events)
	with running_consumer(link, topic, recording(runs, arm_after_five)) as state:
		assert wait_for(lambda: faulted, 15)
		time.sleep(8)
		proxy.heal()
		assert wait_for(lambda: len(state.tracking.processed) == 12, 25), len(state.tracking.processed)
		assert wait_for(lambda: state.lag() == 0, 15), "offsets never committed"
	totals = state.consumer.stats.totals()
	assert not state.crashed and not tracebacks, (state.crashed, tracebacks)
	effects_once(state, events)
	print(f"commit answer lost: handler runs {len(runs)}, {totals.duplicates} duplicates skipped")
