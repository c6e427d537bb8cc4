"""A message the consumer gives up on is copied to the group's dead-letter topic or queue once,
however often filing its Dead Letter is put off, on both real buses."""

import uuid

from consumer_buses import KafkaBus, RabbitBus, bus_fixture, wire  # noqa: F401

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking
from cauldron_fabric.core.errors import PermanentError, RetryableError
from cauldron_fabric.core.retry import Backoff
from conftest import make_envelope


def refuse(envelope, context):
	raise PermanentError("item 1 is for another company")


def test_a_dead_letter_filed_late_is_copied_to_the_dead_letters_once(bus):
	# Each time the Dead Letter could not be filed (the database down, or the letter locked by a
	# Retry in progress) the message was deferred and copied again: a reader of the dead-letter
	# topic or queue met one message as many times as its filing was put off.
	channel, group = bus.channel(), f"late-filing-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(
		group=group, outage_backoff=Backoff(0.2, 2, 0.2, 0), commit_interval=0.2, poll_timeout=0.1
	)
	filed, put_off = [], []

	def file_third_time(letter):
		if len(put_off) < 2:
			put_off.append(letter)
			raise RetryableError("the database is down")
		filed.append(letter)

	tracking = MemoryTracking()
	handlers = HandlerTable.from_mapping({"item.*": refuse})
	consumer = Consumer(
		bus.source(options, channel), handlers, tracking.session(), options, on_dead_letter=file_third_time
	)
	bus.publish(channel, [wire(make_envelope("Item", "I-1", "created", n=1))])
	try:
		consumer.run(lambda: filed, max_seconds=30)
		assert (len(put_off), len(filed)) == (2, 1)
	finally:
		consumer.close()
	copies = bus.dead_letters(group, 3, timeout=8)  # every copy there is, however many
	assert len(copies) == 1, f"{len(copies)} copies of one dead message"
	assert filed[0].destination == put_off[0].destination
