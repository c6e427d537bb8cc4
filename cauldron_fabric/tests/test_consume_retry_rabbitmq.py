"""A RabbitMQ consumer's dead letter, retried from Desk: back in its group's queue, processed once,
or refused with what to do when no queue would take it.

The site's RabbitMQ is the machine's; every test has a group (and so queues) of its own.
"""

from __future__ import annotations

import json
import threading
import time
from unittest.mock import patch

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import dead_letters as dead_letters_api
from cauldron_fabric.consume import dead_letters as consumer_letters
from cauldron_fabric.consume.dead_letters import record_dead_letter
from cauldron_fabric.core.consumer import ConsumerCounts
from cauldron_fabric.core.consumer.rabbitmq_queues import declare_group_queues
from cauldron_fabric.services import relay
from cauldron_fabric.testing.rabbitmq import RabbitMQ
from cauldron_fabric.tests.test_consume import (
	CHARGE,
	LEDGER,
	RABBITMQ_URL,
	book_charge,
	charge,
	delete_rabbitmq_topology,
	group_name,
)
from cauldron_fabric.tests.test_consume_dead_letters import dead_letter
from cauldron_fabric.tests.test_consume_support import (
	consume,
	dead_letters,
	in_another_session,
	use_rabbitmq_for_class,
)
from cauldron_fabric.tests.test_http_support import api_token, make_user, request
from cauldron_fabric.tests.utils import fabric_settings

SITE_CONNECTION = relay.rabbitmq_connection


def without_mandatory(settings):
	"""Returns the site's RabbitMQ connection with transport option ``mandatory`` turned off."""
	url, options = SITE_CONNECTION(settings)
	return url, {**options, "mandatory": False}


def consume_charges(group: str, until=lambda: True) -> ConsumerCounts:
	"""Consumes the group's charges until idle, again (three runs at most) until ``until()`` holds.

	A retry coming back from its delay queue is pushed to the consumer before it reads it: in
	between no queue counts it, and a run may stop as idle with the retry unread.
	"""
	counts = ConsumerCounts()
	for _ in range(3):
		counts += consume(group, [CHARGE], broker="rabbitmq", extra_handlers={CHARGE: book_charge})
		if until():
			break
	return counts


class TestRetryingRabbitMQDeadLetters(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		use_rabbitmq_for_class(cls, "fabricretry", handler_user="Administrator", consumer_max_attempts=2)

	def setUp(self):
		frappe.set_user("Administrator")

	def test_a_dead_charge_retried_from_desk_is_processed_once(self):
		group, failing = group_name("rabbit-retry"), charge(80)
		self.addCleanup(delete_rabbitmq_topology, self.exchange, group)
		LEDGER["fixed"] = False
		consume(group, [CHARGE], broker="rabbitmq")  # declares and binds the group's queue
		rabbit = RabbitMQ(RABBITMQ_URL)
		rabbit.publish(self.exchange, CHARGE, failing.to_json().encode())
		rabbit.close()
		counts = consume_charges(group, until=lambda: dead_letters(group))
		self.assertEqual((counts.retried, counts.dead_lettered, counts.processed), (1, 1, 0))
		(letter,) = dead_letters(group)
		self.assertEqual(
			(letter.event_id, letter.origin_topic, letter.log["broker"]), (failing.id, CHARGE, "amqp")
		)

		LEDGER["fixed"] = True
		frappe.get_doc("Dead Letter", letter.name).retry()
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Retried")
		counts = consume_charges(group)
		self.assertEqual((counts.processed, counts.dead_lettered), (1, 0))
		self.assertEqual(frappe.db.count("ToDo", {"description": f"charge {failing.id}"}), 1)
		self.assertEqual(
			frappe.db.count("Processed Event", {"consumer_group": group, "event_id": failing.id}), 1
		)

	def test_a_retry_no_queue_takes_is_refused_with_what_to_do_and_the_letter_stays_dead(self):
		# The group's queue was deleted (or its consumer never ran): without mandatory the broker
		# dropped the event in silence and the letter said Retried.
		group = group_name("rabbit-no-queue")
		record_dead_letter(dead_letter(group, "orders.created"))
		(letter,) = dead_letters(group)
		for label, connection in (("site options", SITE_CONNECTION), ("mandatory off", without_mandatory)):
			with self.subTest(label), patch.object(relay, "rabbitmq_connection", connection):
				with self.assertRaises(frappe.ValidationError) as raised:
					frappe.get_doc("Dead Letter", letter.name).retry()
				self.assertIn(f"RabbitMQ has no queue {group}", str(raised.exception))
				self.assertIn(f"fabric consume --group {group}", str(raised.exception))
				self.assertNotIn("mandatory", str(raised.exception))
				self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Dead")

	def test_a_retry_the_broker_does_not_take_says_the_letter_stays_dead_not_that_it_is_retried(self):
		# The transport's hint is the relay's ("events wait and are retried"): shown on a Retry,
		# the admin read that the event would go by itself, and nothing ever sent it.
		group = group_name("rabbit-down")
		record_dead_letter(dead_letter(group, "orders.created"))
		(letter,) = dead_letters(group)
		with fabric_settings(rabbitmq_url="amqp://guest@127.0.0.1:1/%2F"):
			with self.assertRaises(frappe.ValidationError) as raised:
				frappe.get_doc("Dead Letter", letter.name).retry()
		self.assertIn("No RabbitMQ broker answered at 127.0.0.1:1", str(raised.exception))
		self.assertIn(
			"did not confirm that it took the event, so this letter stays Dead", str(raised.exception)
		)
		self.assertNotIn("retried.", str(raised.exception))
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Dead")

	def test_an_event_dying_again_before_its_retry_commits_gets_a_letter_of_its_own(self):
		# Desk's bulk Retry commits once, after every letter it sent back. A consumer quicker than
		# that gave up on a retried event again while its letter still read Dead, took it for the
		# same letter and filed none; then the commit marked it Retried: dead, and nowhere in Desk.
		group = group_name("rabbit-race")
		self.addCleanup(delete_rabbitmq_topology, self.exchange, group)
		rabbit = RabbitMQ(RABBITMQ_URL)
		declare_group_queues(rabbit.channel, group, self.exchange, [CHARGE], [1.0])
		rabbit.close()
		letter = dead_letter(group, "orders.created")
		record_dead_letter(letter)
		(first,) = dead_letters(group)
		frappe.get_doc("Dead Letter", first.name).retry()  # the event is back; the request goes on
		consumer, errors = in_another_session(record_dead_letter, letter)  # and it dies again
		time.sleep(1)
		frappe.db.commit()
		consumer.join(30)
		self.assertEqual(errors, [])
		self.assertEqual(sorted(row.status for row in dead_letters(group)), ["Dead", "Retried"])

	def test_a_letter_a_bulk_retry_sent_back_is_released_before_the_next_one_is_retried(self):
		# The bulk Retry committed once, after every letter: each letter stayed locked until the
		# last was sent, and a consumer whose event died again meanwhile gave up waiting on it.
		group = group_name("rabbit-bulk")
		self.addCleanup(delete_rabbitmq_topology, self.exchange, group)
		rabbit = RabbitMQ(RABBITMQ_URL)
		declare_group_queues(rabbit.channel, group, self.exchange, [CHARGE], [1.0])
		rabbit.close()
		first, second = dead_letter(group, "orders.created"), dead_letter(group, "orders.created")
		record_dead_letter(first)
		record_dead_letter(second)
		names = [row.name for row in dead_letters(group)]
		locked, release = threading.Event(), threading.Event()

		def hold_second_letter() -> None:  # another admin's Retry of it in progress
			frappe.db.sql("SELECT name FROM `tabDead Letter` WHERE name = %s FOR UPDATE", names[1])
			locked.set()
			release.wait(30)
			frappe.db.rollback()

		def die_again() -> None:  # the first letter's event, sent back, dies again
			try:
				time.sleep(1)  # by then the bulk Retry has sent the first and waits on the second
				record_dead_letter(first)
			finally:
				release.set()

		holder, _ = in_another_session(hold_second_letter)
		locked.wait(10)
		consumer, errors = in_another_session(die_again)
		result = dead_letters_api.retry(names)
		consumer.join(30)
		holder.join(30)
		self.assertEqual(errors, [])
		self.assertEqual(result, {"done": 2, "failed": []})
		self.assertEqual(sorted(row.status for row in dead_letters(group)), ["Dead", "Retried", "Retried"])

	def test_two_retries_of_one_letter_at_once_send_its_event_once(self):
		# The second waits on the first's lock, then must read the letter as the first committed
		# it (Retried), not as it was when its own transaction began (Dead), or it sends it again.
		group = group_name("rabbit-twice")
		self.addCleanup(delete_rabbitmq_topology, self.exchange, group)
		rabbit = RabbitMQ(RABBITMQ_URL)
		self.addCleanup(rabbit.close)
		declare_group_queues(rabbit.channel, group, self.exchange, [CHARGE], [1.0])
		letter = dead_letter(group, "orders.created")
		record_dead_letter(letter)
		(row,) = dead_letters(group)

		def retry_after_a_read() -> None:
			frappe.db.get_value("Dead Letter", row.name, "status")  # its snapshot: Dead
			frappe.get_doc("Dead Letter", row.name).retry()

		frappe.get_doc("Dead Letter", row.name).retry()  # the first: sent, not yet committed
		second, errors = in_another_session(retry_after_a_read)
		time.sleep(1)  # the second waits on the lock by now
		frappe.db.commit()
		second.join(30)
		sent = rabbit.drain(group)
		self.assertEqual([json.loads(body)["id"] for _, body in sent], [letter.envelope.id], "sent once")
		(error,) = errors
		self.assertIn("Only a dead letter can be retried; this one is Retried", str(error))

	def test_a_bulk_retry_sends_each_event_once_to_its_own_group_over_one_connection(self):
		# Each letter opened, and closed, a connection of its own: about 0.1 s a letter, so a bulk
		# Retry of thousands ran past any request's timeout.
		groups = [group_name("rabbit-bulk-a"), group_name("rabbit-bulk-b")]
		no_queue = group_name("rabbit-bulk-gone")
		rabbit = RabbitMQ(RABBITMQ_URL)
		self.addCleanup(rabbit.close)
		for group in groups:
			self.addCleanup(delete_rabbitmq_topology, self.exchange, group)
			declare_group_queues(rabbit.channel, group, self.exchange, [CHARGE], [1.0])
		letters = {group: dead_letter(group, "orders.created") for group in [*groups, no_queue]}
		for letter in letters.values():
			record_dead_letter(letter)
		names = {group: dead_letters(group)[0].name for group in letters}
		opened = patch.object(consumer_letters, "open_transport", wraps=consumer_letters.open_transport)
		with opened as open_transport:
			result = dead_letters_api.retry([names[groups[0]], names[no_queue], names[groups[1]]])
		self.assertEqual(result["done"], 2)
		((failed),) = result["failed"]
		self.assertEqual(failed["name"], names[no_queue])
		self.assertIn(f"RabbitMQ has no queue {no_queue}", failed["error"])
		for group in groups:
			(sent,) = rabbit.drain(group)
			self.assertEqual(json.loads(sent[1])["id"], letters[group].envelope.id)
		self.assertEqual(frappe.db.get_value("Dead Letter", names[no_queue], "status"), "Dead")
		self.assertEqual(open_transport.call_count, 2)  # again once after the refused letter

	def test_a_retry_sent_with_a_forged_form_sends_the_stored_event_to_its_own_group(self):
		# Desk's Retry button sends the document with the call (run_doc_method's docs): the
		# client's copy, whose group and event were what Retry sent, to any queue on the broker.
		group, other = group_name("rabbit-own"), group_name("rabbit-other")
		for name in (group, other):
			self.addCleanup(delete_rabbitmq_topology, self.exchange, name)
		rabbit = RabbitMQ(RABBITMQ_URL)
		self.addCleanup(rabbit.close)
		for name in (group, other):
			declare_group_queues(rabbit.channel, name, self.exchange, [CHARGE], [1.0])
		letter = dead_letter(group, "orders.created")
		record_dead_letter(letter)
		(row,) = dead_letters(group)
		stored = frappe.get_doc("Dead Letter", row.name)
		forged = {**stored.as_dict(), "consumer_group": other, "envelope": charge(81).to_json()}
		token = api_token(make_user("fabric-retry-manager@example.com", ["Fabric Manager"]))
		response = request(
			"post",
			"/api/method/run_doc_method",
			json={"docs": frappe.as_json(forged), "method": "retry"},
			headers={"Authorization": token},
		)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual(rabbit.drain(other), [])
		(sent,) = rabbit.drain(group)
		self.assertEqual(json.loads(sent[1])["id"], letter.envelope.id)
