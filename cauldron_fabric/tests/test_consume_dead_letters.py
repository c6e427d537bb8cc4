"""A consumer's dead letter is filed once per origin and sent back to its group as it came.

record_dead_letter is called as the consumer runner calls it; a message redelivered after the
consumer died between filing its letter and acknowledging it is filed again with the same origin.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from unittest.mock import patch

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import dead_letters as dead_letters_api
from cauldron_fabric.consume import dead_letters as consumer_letters
from cauldron_fabric.consume.dead_letters import record_dead_letter
from cauldron_fabric.consume.runner import build_consumer
from cauldron_fabric.core.consumer.kafka_group import retry_topic
from cauldron_fabric.core.consumer.messages import (
	ATTEMPTS,
	INVALID_ENVELOPE,
	ORIGIN_TOPIC,
	DeadLetter,
	Failure,
	Origin,
)
from cauldron_fabric.core.errors import ConfigurationError, RetryableError
from cauldron_fabric.testing.kafka_broker import read_topic
from cauldron_fabric.tests.test_consume import charge, group_name
from cauldron_fabric.tests.test_consume_support import dead_letters, in_another_session
from cauldron_fabric.tests.test_http_support import api_token, make_user, request
from cauldron_fabric.tests.utils import start_broker

MARKUP_KEY = "orders.<b>x</b>.<img src=x onerror=alert(1)>"


def dead_letter(group: str, topic: str, broker: str = "amqp", entity_id: str = "CH-5") -> DeadLetter:
	"""Returns a letter for a failed charge consumed from ``topic`` (a routing key on RabbitMQ)."""
	envelope = charge(5)
	envelope = replace(envelope, data=replace(envelope.data, entity_id=entity_id))
	return DeadLetter(
		group=group,
		origin=Origin(topic, 0, 7),
		attempts=3,
		failure=Failure("attempts-exhausted", "builtins.RuntimeError", f"no route for {topic}"),
		destination=f"{group}.dead",
		body=envelope.to_json().encode(),
		envelope=envelope,
		broker=broker,
	)


class TestRecordingDeadLetters(FrappeTestCase):
	def test_a_letter_filed_again_after_a_crash_is_one_letter_even_with_markup_in_its_routing_key(self):
		group = group_name("markup")
		letter = dead_letter(group, MARKUP_KEY, entity_id="CH-<i>5</i>")
		record_dead_letter(letter)
		record_dead_letter(letter)  # redelivered: the consumer died before acknowledging it
		(row,) = dead_letters(group)
		shown = MARKUP_KEY.replace("<", "\u2039").replace(">", "\u203a")
		self.assertEqual((row.origin_topic, row.reference), (shown, f"{shown}/{letter.envelope.id}"))
		self.assertEqual(row.last_error, f"no route for {shown}")
		self.assertEqual(
			frappe.db.get_value("Dead Letter", row.name, "entity_id"), "CH-\u2039i\u203a5\u2039/i\u203a"
		)
		self.assertEqual(row.log["originTopic"], MARKUP_KEY, "the exact origin, for Retry")

	def test_a_letter_with_texts_longer_than_the_columns_is_filed_once(self):
		# Routing keys go up to 255 bytes, entity ids have no limit: a text over 140 characters
		# failed the insert, so the message was kept and failed again for ever.
		group, topic = group_name("long"), "orders." + "x" * 240
		letter = dead_letter(group, topic, entity_id="CH-" + "9" * 300)
		record_dead_letter(letter)
		record_dead_letter(letter)
		(row,) = dead_letters(group)
		self.assertTrue(row.reference.endswith(f"/{letter.envelope.id}"))
		self.assertEqual(len(row.reference), 140)
		self.assertEqual(frappe.db.get_value("Dead Letter", row.name, "entity_id"), "CH-" + "9" * 137)
		self.assertEqual(row.log["originTopic"], topic)

	def test_long_topics_that_differ_only_past_the_cut_are_two_letters(self):
		# Cut to fit the column, two such topics gave one reference: the second topic's message
		# dying at the same partition and offset was taken for the first's letter, and filed
		# under none.
		group, stem = group_name("long-twins"), "orders." + "x" * 200
		first, second = (dead_letter(group, stem + end, broker="kafka") for end in (".eu", ".us"))
		record_dead_letter(first)
		record_dead_letter(second)
		record_dead_letter(second)  # redelivered: still one letter for it
		rows = dead_letters(group)
		self.assertEqual(sorted(row.log["originTopic"] for row in rows), [stem + ".eu", stem + ".us"])
		self.assertEqual(len({row.reference for row in rows}), 2)
		for row in rows:
			self.assertEqual(len(row.reference), 140)
			self.assertTrue(row.reference.startswith("orders.xxx"))
			self.assertTrue(row.reference.endswith("/0/7"))

	def test_a_letter_whose_retry_has_not_ended_holds_its_consumer_seconds_not_a_minute(self):
		# The consumer waits on a letter a Retry or Discard has locked: a bulk Retry of thousands
		# holds it for minutes, and InnoDB's wait (50 s) stalled the consumer, its heartbeats
		# unanswered, before it gave up with a bare lock timeout.
		group = group_name("held")
		letter = dead_letter(group, "orders.created")
		record_dead_letter(letter)
		(row,) = dead_letters(group)
		frappe.get_doc("Dead Letter", row.name).load_locked()  # a Retry in progress
		self.addCleanup(frappe.db.rollback)
		started = time.monotonic()
		consumer, errors = in_another_session(record_dead_letter, letter)
		consumer.join(60)
		self.assertLess(time.monotonic() - started, 15)
		(error,) = errors
		self.assertIsInstance(error, RetryableError)
		self.assertIn(f"Dead Letter {row.name} is being retried or discarded", str(error))

	def test_rabbitmq_letters_are_told_apart_by_their_message_not_their_delivery_tag(self):
		# A delivery tag counts deliveries on one channel and starts again at 1 on the next: the
		# first message dying after each reconnect had the same origin, and only one of them got a
		# Dead Letter; a message redelivered after a crash had another, and got a second.
		group = group_name("tags")
		first, second = dead_letter(group, "orders.created"), dead_letter(group, "orders.created")
		record_dead_letter(first)
		record_dead_letter(second)
		record_dead_letter(replace(first, origin=Origin("orders.created", 0, 12)))  # redelivered
		garbage = replace(first, envelope=None, body=b"not an event")
		record_dead_letter(garbage)
		record_dead_letter(replace(garbage, origin=Origin("orders.created", 0, 3)))
		letters = dead_letters(group)
		self.assertEqual(
			sorted(row.event_id or "" for row in letters), sorted(["", first.envelope.id, second.envelope.id])
		)


class TestConcurrentRetries(FrappeTestCase):
	def test_a_retry_of_a_letter_another_request_is_retrying_is_refused_in_seconds_saying_so(self):
		# A second Retry (another manager, or a double click) waited InnoDB's 50 s on the first's
		# lock and then failed with a bare "Lock wait timeout exceeded".
		group = group_name("retry-held")
		record_dead_letter(dead_letter(group, "orders.created"))
		(row,) = dead_letters(group)
		frappe.get_doc("Dead Letter", row.name).load_locked()  # the first Retry, in progress
		self.addCleanup(frappe.db.rollback)
		started = time.monotonic()
		second, errors = in_another_session(lambda: frappe.get_doc("Dead Letter", row.name).retry())
		second.join(60)
		self.assertLess(time.monotonic() - started, 15)
		(error,) = errors
		self.assertIsInstance(error, frappe.ValidationError)
		self.assertIn(f"Another request is retrying or discarding Dead Letter {row.name}", str(error))

	def test_the_forms_retry_of_a_letter_another_request_is_retrying_is_refused_in_seconds_too(self):
		# The form sends its copy with the call (run_doc_method), which Frappe compares with the
		# stored letter read FOR UPDATE (check_if_latest) before Retry's own locked read: a second
		# Retry from Desk waited InnoDB's 50 s on the first one's lock, then failed with a
		# Server Error instead of saying what is going on.
		group = group_name("retry-held-form")
		record_dead_letter(dead_letter(group, "orders.created"))
		(row,) = dead_letters(group)
		copy = frappe.get_doc("Dead Letter", row.name)
		token = api_token(make_user("fabric-retry-manager@example.com", ["Fabric Manager"]))
		frappe.get_doc("Dead Letter", row.name).load_locked()  # the first Retry, in progress
		self.addCleanup(frappe.db.rollback)
		started = time.monotonic()
		response = request(
			"post",
			"/api/method/run_doc_method",
			json={"docs": frappe.as_json(copy.as_dict()), "method": "retry"},
			headers={"Authorization": token},
		)
		self.assertLess(time.monotonic() - started, 15)
		self.assertEqual(response.status_code, 417, response.text)
		self.assertIn(f"Another request is retrying or discarding Dead Letter {row.name}", response.text)


class TestRetryingDeadLetters(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		start_broker(cls)

	def test_retry_sends_the_exact_origin_back_with_the_event(self):
		group = group_name("retry-origin")
		letter = dead_letter(group, MARKUP_KEY, broker="kafka")
		record_dead_letter(letter)
		(row,) = dead_letters(group)
		self.assertTrue(row.reference.endswith("/0/7"), "on Kafka the partition and offset name it")
		frappe.get_doc("Dead Letter", row.name).retry()
		frappe.db.commit()
		(copy,) = read_topic(self.broker.bootstrap, retry_topic(group, 1), 1)
		headers = dict(copy.headers())
		self.assertEqual(json.loads(copy.value())["id"], letter.envelope.id)
		self.assertEqual((headers[ORIGIN_TOPIC], headers[ATTEMPTS]), (MARKUP_KEY.encode(), b"1"))

	def test_a_bulk_retry_sends_each_event_once_to_its_own_group_over_one_connection(self):
		# Each letter opened, and closed, a producer of its own: a bulk Retry of thousands ran
		# past any request's timeout.
		groups = [group_name("bulk-a"), group_name("bulk-b")]
		letters = {group: dead_letter(group, "orders.created", broker="kafka") for group in groups}
		garbage = dead_letter(groups[0], "orders.created", broker="kafka")
		garbage = replace(
			garbage,
			origin=Origin("orders.created", 0, 8),
			envelope=None,
			body=b"not an event",
			failure=Failure(INVALID_ENVELOPE, "InvalidEnvelope", "not JSON"),
		)
		for letter in [*letters.values(), garbage]:
			record_dead_letter(letter)
		names = [row.name for group in groups for row in dead_letters(group)]
		opened = patch.object(consumer_letters, "open_transport", wraps=consumer_letters.open_transport)
		with opened as open_transport:
			result = dead_letters_api.retry(names)
		self.assertEqual((result["done"], open_transport.call_count), (2, 1))
		((failed),) = result["failed"]
		self.assertIn("This message is not an event (not JSON)", failed["error"])
		for group in groups:
			copies = read_topic(self.broker.bootstrap, retry_topic(group, 1), 1)
			self.assertEqual([json.loads(c.value())["id"] for c in copies], [letters[group].envelope.id])

	def test_a_consumer_group_with_markup_is_refused_before_consuming(self):
		# Its Dead Letters would be filed under another name (Frappe rewrites markup on save), so
		# each redelivery after a crash would file another, and Retry would send to no group.
		with self.assertRaises(ConfigurationError) as caught:
			build_consumer(group="billing.<b>x</b>", topics=["t"])
		self.assertIn("'billing.<b>x</b>'", str(caught.exception))
		self.assertIn("< or >", str(caught.exception))

	def test_a_consumer_group_longer_than_its_columns_is_refused_before_consuming(self):
		# Processed Event and Dead Letter keep the group in 140 characters: a longer one failed
		# every mark and every letter, and each message was kept as an outage for ever.
		group = "billing-" + "g" * 133
		with self.assertRaises(ConfigurationError) as caught:
			build_consumer(group=group, topics=["t"])
		self.assertIn("141 characters", str(caught.exception))
		with self.assertRaises(frappe.CharacterLengthExceededError):
			record_dead_letter(dead_letter(group, "orders.created"))
