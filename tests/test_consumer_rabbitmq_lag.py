"""A RabbitMQ consumer's lag: the group queue's ready messages, the messages it holds delivered and
not acknowledged, and the retries waiting in every delay queue, those of other settings included.

AMQP tells a queue's ready messages only (queue.declare); what the broker delivered and awaits an
acknowledgement for is known to the consumer it delivered to, so each consumer reports its own.
"""

import time
import uuid

from consumer_buses import RabbitBus, wire

from cauldron_fabric.core.consumer import ConsumerOptions
from cauldron_fabric.core.consumer.factory import retry_delays
from cauldron_fabric.core.consumer.rabbitmq_queues import declare_group_queues, retry_queue
from cauldron_fabric.core.retry import Backoff
from conftest import make_envelope

BACKOFF = Backoff(1.0, 4.0, 300.0, 0.0)  # the consumers' own: 1, 4, 16, 64, 256, 300 s


def lag_of(source) -> dict[str, tuple[int, int | None]]:
	return {entry.topic: (entry.lag, entry.in_flight) for entry in source.lag()}


def poll_until(source, count: int, timeout: float = 10) -> list:
	taken, deadline = [], time.monotonic() + timeout
	while len(taken) < count and time.monotonic() < deadline:
		taken += source.poll(count - len(taken), 0.2)
	return taken


def test_messages_delivered_and_not_yet_acknowledged_are_lag_in_flight():
	# With a prefetch, the broker hands the messages out at once: the queue had none ready and
	# the lag said 0 while nothing was processed.
	bus, group = RabbitBus(), f"lag-{uuid.uuid4().hex[:6]}"
	channel = bus.channel()
	source = bus.source(ConsumerOptions(group=group, max_attempts=2, backoff=BACKOFF), channel)
	try:
		bus.publish(channel, [wire(make_envelope()) for _ in range(3)])
		taken = poll_until(source, 2)
		assert len(taken) == 2
		time.sleep(0.5)  # the third is prefetched too
		assert lag_of(source)[group] == (3, 3)
		source.done(taken[0])
		assert lag_of(source)[group] == (2, 2)
	finally:
		source.close()
		bus.close()


def test_retries_left_in_the_delay_queue_of_an_earlier_attempts_setting_are_lag():
	# With 6 attempts the fifth retry waited 256 s; lowered to 2, the group's consumers looked
	# only at the 1 s queue, and the retries still due in the 256 s one were not counted.
	bus, group = RabbitBus(), f"lag-{uuid.uuid4().hex[:6]}"
	channel = bus.channel()
	earlier = retry_delays(ConsumerOptions(group=group, max_attempts=6, backoff=BACKOFF))
	admin = bus.connection.channel()
	declare_group_queues(admin, group, channel, ["#"], earlier)
	admin.basic_publish("", retry_queue(group, 256), b"{}")
	bus.remember(group, earlier)
	source = bus.source(ConsumerOptions(group=group, max_attempts=2, backoff=BACKOFF), channel)
	try:
		lags = lag_of(source)
		assert lags[retry_queue(group, 256)] == (1, None)
		assert retry_queue(group, 300) not in lags, "never declared: nothing waits there"
	finally:
		source.close()
		bus.close()
