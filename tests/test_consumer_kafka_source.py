"""The Kafka source on a real Kafka-protocol broker: what a pattern matches, keys, commits."""

import uuid

from consumer_buses import KafkaBus, raw, wait_for

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.core.consumer.kafka import dead_letter_topic
from cauldron_fabric.testing.kafka_broker import create_topic, read_topic


def test_a_pattern_matching_the_groups_own_dead_letter_topic_does_not_consume_its_dead_letters(kafka):
	# The documented pattern '^cauldron\..*' with a group named 'cauldron.billing' matches the
	# group's own dead-letter topic 'cauldron.billing.dlt'. A dead letter read back from it fails
	# the same way and is dead-lettered again, and again: one bad message, endless copies.
	prefix = f"p{uuid.uuid4().hex[:6]}"
	group, topic = f"{prefix}.billing", f"{prefix}.events"
	create_topic(kafka.bootstrap, topic, 2)
	options = ConsumerOptions(group=group, max_attempts=2, poll_timeout=0.2, commit_interval=0.2)
	source = open_source(
		kafka.url, options, pattern=rf"^{prefix}\..*", broker_options={"session_timeout_ms": 6000}
	)
	letters = []
	consumer = Consumer(
		source,
		HandlerTable.from_mapping({"item.*": lambda e, c: None}),
		MemoryTracking().session(),
		options,
		on_dead_letter=letters.append,
	)
	try:
		own_letters = dead_letter_topic(group)
		assert wait_for(
			lambda: consumer.consume_round() >= 0 and own_letters in {t for t, _ in source.assigned}, 30
		), "the pattern matches the group's dead-letter topic"
		KafkaBus(kafka).publish(topic, [raw(b"{not json")])
		consumer.run(max_seconds=12)
	finally:
		consumer.close()
	copies = read_topic(kafka.bootstrap, own_letters, 2, timeout=8)
	assert len(letters) == 1 and len(copies) == 1, f"{len(letters)} dead letters for one bad message"
	assert KafkaBus(kafka).lag(group, own_letters) == 0, "the dead letters passed over are committed"
