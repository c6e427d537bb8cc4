"""The Kafka consumer through a retry or dead-letter copy whose produce hangs: the event waits
as in an outage and is copied and settled once the broker answers again
(kafka_consumer_fault_support lowers the timeouts).

What holds: nothing is lost (every event's effect is committed and the group's lag reaches 0);
each event's effect is committed once, a redelivery being a duplicate the tracking store skips;
the consumer neither crashes nor logs tracebacks.
"""

import time

import pytest
from consumer_buses import wait_for
from fault_proxy import kafka_behind_proxy_fixture, kafka_link_fixture  # noqa: F401 (fixtures)
from kafka_consumer_fault_support import (
	effects_once,
	items,
	link_fixture,  # noqa: F401 (a fixture)
	new_topic,
	publish,
	running_consumer,
	tracebacks_fixture,  # noqa: F401 (a fixture)
)

from cauldron_fabric.core.consumer import kafka as kafka_source
from cauldron_fabric.core.errors import PermanentError
from conftest import make_envelope


@pytest.mark.parametrize("mode", ["flaky", "refused"])
def test_copy_whose_produce_hangs_defers_the_event_and_it_is_copied_once_the_broker_answers(
	link, tracebacks, monkeypatch, mode
):
	# The source's producer connects at its first copy: the broker takes that connection and
	# never answers, while the consuming connection flows. The copy's publish gives up after
	# its timeout (lowered here from 15 s to 5 s), the event waits as in an outage, and once
	# the broker answers again it is copied (retried or dead-lettered) and settled once.
	monkeypatch.setattr(kafka_source, "PUBLISH_TIMEOUT", 5.0)
	proxy, topic, runs, letters, hung = link.proxy, new_topic(link), [], [], []
	events = [*items(3), make_envelope("Item", "I-9", "created", mode=mode, n=9)]

	def handle(envelope, context):
		runs.append(envelope.id)
		mode_of = envelope.data.payload["mode"]
		if mode_of != "good" and not hung:
			hung.append(time.monotonic())
			proxy.answering = False  # from now until set back: the copy's connection never answers
		if mode_of == "flaky" and context.attempt == 1:
			raise ConnectionError("the ledger service blinked")
		if mode_of == "refused":
			raise PermanentError("item 9 is for another company")
		context.transaction.append(envelope.id)

	publish(link, topic, events)
	with running_consumer(link, topic, handle) as state:
		state.consumer.outcomes.on_dead_letter = letters.append
		assert wait_for(lambda: hung, 15)
		time.sleep(7)
		assert not state.crashed, state.crashed
		proxy.answering = True
		answering = time.monotonic()
		if mode == "flaky":
			assert wait_for(lambda: len(state.tracking.processed) == 4, 25), len(state.tracking.processed)
		else:
			assert wait_for(lambda: letters, 25), "never dead-lettered"
		took = time.monotonic() - answering
	totals = state.consumer.stats.totals()
	assert not state.crashed and not tracebacks, (state.crashed, tracebacks)
	effects_once(state, events if mode == "flaky" else events[:3])
	if mode == "refused":
		assert len(letters) == 1, letters
	assert took < 15, took
	print(
		f"{mode} copy hung: settled {took:.1f} s after the broker answered ({time.monotonic() - hung[0]:.1f} s"
		f" after the hang); deferred {totals.deferred}, handler runs {len(runs)}, letters {len(letters)}"
	)
