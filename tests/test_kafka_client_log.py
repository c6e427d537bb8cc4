"""What the Kafka transport's client logs while its broker is down, against a real Kafka-protocol broker.

librdkafka logged a FAIL line at ERROR on every reconnect to a broker that was down: about 18 a
second on the terminal of ``bench fabric relay`` (and in a Procfile's log) for as long as the
outage lasted, under the one line the relay says itself. The transport's own error names the
same failure.
"""

import logging

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


def test_a_broker_gone_away_is_told_by_the_transport_error_not_a_log_line_per_reconnect():
	logger = logging.getLogger("cauldron_fabric.kafka")
	kept, level = Kept(), logger.level
	logger.addHandler(kept)
	logger.setLevel(logging.DEBUG)
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
		logger.removeHandler(kept)
		logger.setLevel(level)
	assert isinstance(delivery.error, BrokerUnreachable)
	assert "Connection refused" in str(delivery.error)
	failures = [r for r in kept.records if "Connection refused" in r.getMessage()]
	assert failures, "librdkafka logged no reconnect: the broker was not seen going away"
	# Kept for whoever turns DEBUG on, but no line reaches a terminal or a log at the usual levels.
	assert [r.getMessage() for r in failures if r.levelno > logging.DEBUG] == []
