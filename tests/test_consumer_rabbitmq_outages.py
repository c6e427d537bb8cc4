"""A RabbitMQ broker that stops answering while the consumer publishes a retry copy (or a dead
letter, or a reply: the same confirmed publish).

The consumer reaches the machine's RabbitMQ through a TCP proxy that, frozen, forwards nothing
and keeps the connections open: a hung node, without stopping the RabbitMQ other tests share.
"""

import threading
import time
import uuid

from consumer_buses import RabbitBus, wait_for, wire
from tcp_proxy import Proxy

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.testing.kafka_broker import free_port
from conftest import make_envelope


def test_a_confirm_a_frozen_broker_never_sends_is_given_up_and_the_message_comes_back():
	# The consumer waited for the confirm of its retry copy with no bound but the heartbeat's:
	# over a minute during which the queue moved no further.
	bus, port = RabbitBus(), free_port()
	proxy = Proxy(port, 5672).start()
	channel, group = bus.channel(), f"frozen-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(
		group=group,
		max_attempts=3,
		backoff=Backoff(0.2, 2, 1, 0),
		outage_backoff=Backoff(0.3, 2, 1, 0),
		poll_timeout=0.1,
	)
	source = open_source(
		f"amqp://guest:guest@127.0.0.1:{port}/%2F",
		options,
		["#"],
		broker_options={"exchange": channel, "confirm_timeout": 2, "connection_timeout": 2},
	)
	bus.remember(group, source.retry_delays)
	runs = []

	def fail_first_then_freeze(envelope, context):
		runs.append(time.monotonic())
		if len(runs) == 1:
			proxy.frozen = True  # the broker stops answering before it confirms the retry copy
			raise RuntimeError("the first run fails")

	tracking = MemoryTracking()
	consumer = Consumer(
		source, HandlerTable.from_mapping({"item.*": fail_first_then_freeze}), tracking.session(), options
	)
	event = make_envelope("Item", "I-1", "created", n=1)
	bus.publish(channel, [wire(event)])
	stop = threading.Event()
	running = threading.Thread(target=consumer.run, args=(stop.is_set,), daemon=True)
	try:
		running.start()
		assert wait_for(lambda: runs, 20), "the event was never handled"
		assert wait_for(lambda: consumer.stats.totals().deferred >= 1, 8), (
			"the consumer still waits for a confirm the frozen broker never sends"
		)
		assert time.monotonic() - runs[0] < 6, "given up after the confirm timeout"
		proxy.frozen = False
		assert wait_for(lambda: (group, event.id) in tracking.processed, 40), "the event came back"
	finally:
		proxy.frozen = False
		stop.set()
		running.join(30)
		consumer.close()
		proxy.stop()
		bus.close()
	counts = consumer.stats.totals()
	assert (counts.processed, counts.dead_lettered) == (1, 0), counts
