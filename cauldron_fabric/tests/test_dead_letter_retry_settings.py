"""A consumer's dead letter retried without its broker says which broker's setting to fill.

The letter goes back to the broker it came from: a Kafka letter was told "Set the Kafka bootstrap
servers or the RabbitMQ URL in Fabric Settings", though a RabbitMQ URL alone still could not retry
it (and a RabbitMQ letter likewise).
"""

from __future__ import annotations

import json

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.tests.test_desk_actions import consumer_dead_letter
from cauldron_fabric.tests.utils import fabric_settings

RABBITMQ_URL = "amqp://guest@127.0.0.1:5672/%2F"


class TestDeadLetterRetryNamesTheMissingBroker(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")

	def refused_retry(self, broker: str) -> str:
		"""Files a consumer's letter from ``broker`` (as its attempt log names it: kafka or amqp),
		presses Retry, and returns the refusal."""
		letter = consumer_dead_letter()
		letter.db_set("attempt_log", json.dumps({"reason": "handler-failed", "broker": broker}))
		with self.assertRaises(frappe.ValidationError) as refused:
			frappe.get_doc("Dead Letter", letter.name).retry()
		return str(refused.exception)

	def test_a_kafka_letter_asks_for_the_bootstrap_servers_only(self):
		with fabric_settings(bootstrap_servers="", rabbitmq_url=RABBITMQ_URL):
			message = self.refused_retry("kafka")
		self.assertIn("No kafka connection is configured", message)
		self.assertIn("Set the Kafka bootstrap servers in Fabric Settings", message)
		self.assertNotIn("RabbitMQ", message)

	def test_a_rabbitmq_letter_asks_for_the_rabbitmq_url_only(self):
		with fabric_settings(bootstrap_servers="127.0.0.1:9092", rabbitmq_url=""):
			message = self.refused_retry("amqp")
		self.assertIn("No rabbitmq connection is configured", message)
		self.assertIn("Set the RabbitMQ URL in Fabric Settings", message)
		self.assertNotIn("Kafka", message)
