"""What the Kafka transport's client logs while its broker is down, against a real Kafka-protocol broker.

librdkafka logged a FAIL line at ERROR on every reconnect to a broker that was down: about 18 a
second on the terminal of ``bench fabric relay`` (and in a Procfile's log) for as long as the
outage lasted, under the one line the relay says itself. The transport's own error names the
same failure.
"""

import logging
import time

from cauldron_fabric.core.consumer import ConsumerOptions, open_source
from cauldron_fabric.core.errors import BrokerUnreachable
from cauldron_fabric.core.ports import OutboundMessage
from cauldron_fabric.core.transports.kafka import KafkaTransport
from cauldron_fabric.testing.kafka_broker import KafkaBroker


class Kept(logging.Handler):
	"""Keeps every record of the logger it is added to."""

	def __init__(self):
		super().__init__(logging.DEBUG)
		self.records: list[logging.LogRecord] = []

	def emit(self, record: logging.LogRecord) -> None:
		self.records.append(record)


def kept_by(name: str):
	"""Returns a handler keeping every record of logger ``name`` (at DEBUG) and a function undoing it."""
	logger = logging.getLogger(name)
	kept, level = Kept(), logger.level
	logger.addHandler(kept)
	logger.setLevel(logging.DEBUG)

	def undo():
		logger.removeHandler(kept)
		logger.setLevel(level)

	return kept, undo


def refused_above_debug(kept: Kept) -> list[str]:
	"""Returns the reconnect lines kept above DEBUG, having checked that some were kept at all."""
	failures = [r for r in kept.records if "Connection refused" in r.getMessage()]
	assert failures, "librdkafka logged no reconnect: the broker was not seen going away"
	return [r.getMessage() for r in failures if r.levelno > logging.DEBUG]


def test_a_broker_gone_away_is_told_by_the_transport_error_not_a_log_line_per_reconnect():
	kept, undo = kept_by("cauldron_fabric.kafka")
	broker = KafkaBroker().start()
	transport = KafkaTransport(broker.bootstrap, {"message_timeout_ms": 1500})
	message = OutboundMessage("fabric-client-log", "ToDo/1", b"{}")
	try:
		assert transport.publish([message], 10)[0].ok
		broker.stop()
		(delivery,) = transport.publish([message], 10)
	finally:
		broker.stop()
		transport.close()
		undo()
	assert isinstance(delivery.error, BrokerUnreachable)
	assert "Connection refused" in str(delivery.error)
	# Kept for whoever turns DEBUG on, but no line reaches a terminal or a log at the usual levels.
	assert refused_above_debug(kept) == []


def test_a_consumer_whose_broker_went_away_logs_no_line_per_reconnect():
	# bench fabric consume says once that it waits for the broker; its client said it again at
	# every reconnect, at ERROR.
	kept, undo = kept_by("cauldron_fabric.consumer.kafka")
	broker = KafkaBroker().start()
	options = ConsumerOptions(group="fabric-client-log", poll_timeout=0.2)
	source = open_source(broker.url, options, topics=["fabric-client-log"])
	try:
		source.poll(10, 0.5)
		broker.stop()
		ends = time.monotonic() + 3
		while time.monotonic() < ends:
			source.poll(10, 0.2)
	finally:
		broker.stop()
		source.close()
		undo()
	said = refused_above_debug(kept)
	assert len(said) <= 1, f"said {len(said)} times, not once: {said[:3]}"
