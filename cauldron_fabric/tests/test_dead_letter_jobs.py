"""A bulk Retry or Discard of more letters than a request gets through runs as a background job:
the call answers at once, the job acts as the user who asked and leaves them a summary.

Jobs run in the test's process (frappe.enqueue runs them at once while tests run); the site's
RabbitMQ is the machine's, every test has a group (and so queues) of its own.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import dead_letters as dead_letters_api
from cauldron_fabric.consume.dead_letters import record_dead_letter
from cauldron_fabric.core.consumer.messages import Origin
from cauldron_fabric.core.consumer.rabbitmq_queues import declare_group_queues
from cauldron_fabric.services import dead_letter_bulk
from cauldron_fabric.testing.kafka_broker import free_port
from cauldron_fabric.testing.rabbitmq import RabbitMQ
from cauldron_fabric.tests.test_consume import CHARGE, RABBITMQ_URL, delete_rabbitmq_topology, group_name
from cauldron_fabric.tests.test_consume_dead_letters import dead_letter
from cauldron_fabric.tests.test_consume_support import dead_letters, use_rabbitmq_for_class
from cauldron_fabric.tests.test_http_support import make_user
from cauldron_fabric.tests.utils import fabric_settings, listed_patches

CLERK = "fabric-bulk-clerk@example.com"


def summaries(user: str) -> list[dict]:
	"""Returns the bulk summaries left in ``user``'s notifications, newest first."""
	return frappe.get_all(
		"Notification Log",
		filters={"for_user": user, "document_type": "Dead Letter"},
		fields=["subject", "email_content"],
		order_by="creation desc",
	)


class RefusingPort:
	"""A port on 127.0.0.1 that accepts every connection and closes it at once, as a broker that
	refuses the fabric (a proxy before a stopped broker, a wrong port) does; counts them."""

	def __init__(self):
		self.listener = socket.create_server(("127.0.0.1", 0))
		self.port = self.listener.getsockname()[1]
		self.connections = 0
		threading.Thread(target=self._accept, daemon=True).start()

	def _accept(self) -> None:
		while True:
			try:
				client, _ = self.listener.accept()
			except OSError:
				return
			self.connections += 1
			client.close()

	def close(self) -> None:
		self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
		self.listener.close()


class TestBulkDeadLetterJobs(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		use_rabbitmq_for_class(cls, "fabricbulk")

	def setUp(self):
		frappe.set_user("Administrator")
		self.addCleanup(frappe.set_user, "Administrator")
		frappe.db.delete("Notification Log", {"document_type": "Dead Letter"})
		frappe.db.commit()

	def test_a_bulk_retry_over_the_threshold_runs_as_a_job_that_leaves_a_summary(self):
		# 5,000 letters took 70 s in the request: a busy machine ran it past the 120 s timeout,
		# and Desk showed a timeout with no count.
		group, gone = group_name("bulk-job"), group_name("bulk-job-gone")
		self.addCleanup(delete_rabbitmq_topology, self.exchange, group)
		rabbit = RabbitMQ(RABBITMQ_URL)
		self.addCleanup(rabbit.close)
		declare_group_queues(rabbit.channel, group, self.exchange, [CHARGE], [1.0])
		letters = [dead_letter(group, "orders.created") for _ in range(2)]
		for letter in [*letters, dead_letter(gone, "orders.created")]:
			record_dead_letter(letter)
		names = [row.name for row in dead_letters(group) + dead_letters(gone)]
		with fabric_settings(dead_letters_in_request=2):
			answer = dead_letters_api.retry_matching({"consumer_group": ["in", [group, gone]]})
		self.assertEqual(answer["queued"], 3)
		self.assertTrue(answer["job_id"].startswith("fabric-dead-letters-"))
		self.assertIn("runs in the background (more than 2 take too long", answer["message"])
		sent = sorted(json.loads(body)["id"] for _, body in rabbit.drain(group))
		self.assertEqual(sent, sorted(letter.envelope.id for letter in letters))
		statuses = [frappe.db.get_value("Dead Letter", name, "status") for name in names]
		self.assertEqual(statuses, ["Retried", "Retried", "Dead"])
		(summary,) = summaries("Administrator")
		self.assertEqual(summary.subject, "Retry of 3 dead letters: 2 done, 1 refused.")
		self.assertIn(f"RabbitMQ has no queue {gone}", summary.email_content)
		self.assertIn(names[2], summary.email_content)

	def test_a_bulk_call_of_as_many_letters_as_the_settings_take_in_the_request_answers_with_its_count(self):
		group = group_name("bulk-setting")
		for _ in range(2):
			record_dead_letter(dead_letter(group, "orders.created"))
		names = [row.name for row in dead_letters(group)]
		with fabric_settings(dead_letters_in_request=2):
			self.assertEqual(dead_letters_api.discard(names, "spam"), {"done": 2, "failed": []})
		self.assertEqual(summaries("Administrator"), [])

	def test_the_number_taken_in_the_request_is_500_unless_the_settings_say_otherwise(self):
		with fabric_settings(dead_letters_in_request=None) as settings:
			self.assertEqual(settings.dead_letters_in_request, 500, "an emptied field takes its default")
			self.assertEqual(dead_letter_bulk.in_request_up_to(), 500)
		with fabric_settings(dead_letters_in_request=5000):
			self.assertEqual(dead_letter_bulk.in_request_up_to(), 5000)
		for refused in (0, 5001):
			with self.subTest(refused), self.assertRaisesRegex(frappe.ValidationError, "between 1 and 5000"):
				settings = frappe.get_single("Fabric Settings")
				settings.dead_letters_in_request = refused
				settings.save()
		frappe.db.rollback()

	def test_settings_saved_before_the_field_existed_get_its_default_and_unsaved_ones_stay_unsaved(self):
		from cauldron_fabric.patches import bulk_dead_letter_actions_take_the_default_in_the_request as patch

		field = "dead_letters_in_request"
		self.addCleanup(frappe.db.rollback)
		frappe.db.delete("Singles", {"doctype": "Fabric Settings", "field": field})
		frappe.db.value_cache.pop("Fabric Settings", None)
		self.assertEqual(dead_letter_bulk.in_request_up_to(), 500, "bulk calls read no value as 500")
		patch.execute()
		frappe.db.value_cache.pop("Fabric Settings", None)
		self.assertEqual(frappe.db.get_single_value("Fabric Settings", field), 500, "the form shows it")
		frappe.db.delete("Singles", {"doctype": "Fabric Settings"})
		patch.execute()
		self.assertEqual(
			frappe.db.count("Singles", {"doctype": "Fabric Settings"}), 0, "never saved: left alone"
		)
		self.assertIn(patch.__name__, listed_patches())

	def test_a_bulk_call_under_the_threshold_answers_with_its_count(self):
		group = group_name("bulk-few")
		record_dead_letter(dead_letter(group, "orders.created"))
		names = [row.name for row in dead_letters(group)]
		self.assertEqual(dead_letters_api.discard(names, "spam"), {"done": 1, "failed": []})
		self.assertEqual(summaries("Administrator"), [])

	def test_a_job_whose_user_lost_the_role_since_it_was_queued_acts_on_no_letter(self):
		group = group_name("bulk-demoted")
		record_dead_letter(dead_letter(group, "orders.created"))
		names = [row.name for row in dead_letters(group)]
		frappe.set_user(make_user(CLERK, []))  # the job runs as the user who queued it
		result = dead_letter_bulk.run_bulk_job("discard", names)
		frappe.set_user("Administrator")
		self.assertEqual(result["done"], 0)
		self.assertEqual(frappe.db.get_value("Dead Letter", names[0], "status"), "Dead")
		(summary,) = summaries(CLERK)
		self.assertEqual(summary.subject, "Discard of 1 dead letters: 0 done, 1 refused.")
		self.assertIn("Only System Manager or Fabric Manager may do this.", summary.email_content)

	def test_a_user_without_the_role_is_refused_before_a_job_is_queued(self):
		group = group_name("bulk-clerk")
		for _ in range(2):
			record_dead_letter(dead_letter(group, "orders.created"))
		names = [row.name for row in dead_letters(group)]
		with fabric_settings(dead_letters_in_request=1):
			frappe.set_user(make_user(CLERK, []))
			with self.assertRaises(frappe.PermissionError):
				dead_letters_api.retry(names)
			frappe.set_user("Administrator")
		self.assertEqual({frappe.db.get_value("Dead Letter", name, "status") for name in names}, {"Dead"})
		self.assertEqual(summaries(CLERK), [], "a queued job would have left its summary")

	def test_a_bulk_retry_tries_an_unreachable_broker_once_and_refuses_its_other_letters_at_once(self):
		# Each letter opened a connection of its own after the last one failed: with a broker
		# that does not answer, every letter waited for the connection timeout (5 s), and a
		# bulk Retry of 500 letters ran for 40 minutes to say the broker was down.
		group = group_name("bulk-down")
		for _ in range(4):
			record_dead_letter(dead_letter(group, "orders.created"))
		names = [row.name for row in dead_letters(group)]
		broker = RefusingPort()
		self.addCleanup(broker.close)
		with fabric_settings(rabbitmq_url=f"amqp://guest@127.0.0.1:{broker.port}/%2F"):
			result = dead_letters_api.retry(names)
		self.assertEqual(broker.connections, 1, "one attempt to connect for the whole call")
		self.assertEqual(result["done"], 0)
		self.assertEqual([letter["name"] for letter in result["failed"]], names)
		(reason,) = {letter["error"] for letter in result["failed"]}
		self.assertIn(f"No RabbitMQ broker answered at 127.0.0.1:{broker.port}", reason)
		statuses = {frappe.db.get_value("Dead Letter", name, "status") for name in names}
		self.assertEqual(statuses, {"Dead"}, "every letter stays Dead, to be retried once the broker is back")

	def test_a_bulk_retry_of_kafka_letters_waits_for_an_unreachable_cluster_once(self):
		# As on RabbitMQ: each letter's producer waited out message.timeout.ms (10 s by default)
		# for a cluster nothing answered at. A real client, 1 s of it, no topic creation first.
		group, dead = group_name("bulk-kafka-down"), f"127.0.0.1:{free_port()}"
		letter = dead_letter(group, "orders.created", broker="kafka")
		for offset in range(8):  # a Kafka letter is its topic, partition and offset
			record_dead_letter(replace(letter, origin=Origin("orders.created", 0, offset)))
		names = [row.name for row in dead_letters(group)]
		self.assertEqual(len(names), 8)
		with fabric_settings(bootstrap_servers=dead, message_timeout_ms=1000, auto_create_topics=0):
			started = time.monotonic()
			result = dead_letters_api.retry(names)
			took = time.monotonic() - started
		# About 1.5 s; a wait for each letter would take 8 s or more, so a busy machine has room.
		self.assertLess(took, 5, "one wait of 1 s for the whole call, not one for each of 8 letters")
		self.assertEqual(result["done"], 0)
		self.assertEqual([letter["name"] for letter in result["failed"]], names)
		(reason,) = {letter["error"] for letter in result["failed"]}
		self.assertIn(f"Kafka at {dead} did not take the message", reason)
		statuses = {frappe.db.get_value("Dead Letter", name, "status") for name in names}
		self.assertEqual(statuses, {"Dead"})

	def test_a_letter_the_users_permissions_leave_out_is_refused_and_the_others_go(self):
		# A bulk call names letters it never opens: Frappe's check of a form's document did not
		# run, and a manager restricted to some letters (a User Permission) acted on any.
		group = group_name("bulk-restricted")
		for _ in range(2):
			record_dead_letter(dead_letter(group, "orders.created"))
		mine, other = [row.name for row in dead_letters(group)]
		manager = make_user(CLERK, ["Fabric Manager"])
		permission = frappe.get_doc(
			{"doctype": "User Permission", "user": manager, "allow": "Dead Letter", "for_value": mine}
		).insert(ignore_permissions=True)
		self.addCleanup(frappe.delete_doc, "User Permission", permission.name, ignore_permissions=True)
		self.addCleanup(frappe.db.commit)
		frappe.db.commit()
		frappe.set_user(manager)
		result = dead_letters_api.discard([other, mine], "spam")
		with self.assertRaises(frappe.PermissionError) as refused:
			frappe.get_doc("Dead Letter", {"name": other}).discard("spam")  # (read as Administrator's)
		frappe.set_user("Administrator")
		self.assertEqual(result["done"], 1)
		((failure),) = result["failed"]
		self.assertEqual(failure["name"], other)
		self.assertIn(
			f"You may not act on Dead Letter {other}: your permissions leave it out", failure["error"]
		)
		self.assertIn("permissions leave it out", str(refused.exception))
		statuses = {name: frappe.db.get_value("Dead Letter", name, "status") for name in (mine, other)}
		self.assertEqual(statuses, {mine: "Discarded", other: "Dead"})

	def test_a_bulk_call_naming_a_letter_that_does_not_exist_reports_it_and_acts_on_the_others(self):
		group = group_name("bulk-missing")
		record_dead_letter(dead_letter(group, "orders.created"))
		(name,) = [row.name for row in dead_letters(group)]
		result = dead_letters_api.discard(["no-such-letter", name], "spam")
		self.assertEqual(result["done"], 1)
		self.assertEqual(
			result["failed"], [{"name": "no-such-letter", "error": "Dead Letter no-such-letter not found"}]
		)
		self.assertEqual(frappe.db.get_value("Dead Letter", name, "status"), "Discarded")
		self.assertFalse(frappe.db.exists("Dead Letter", "no-such-letter"), "nothing filed under the name")
