"""Failing destinations: retries, Dead Letters, Retry, Retry all matching, Discard, permissions."""

from __future__ import annotations

import json
import signal
import time
from unittest.mock import patch

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import dead_letters as dead_letters_api
from cauldron_fabric.core.delivery import DeliveryRequest
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.delivery import worker as worker_module
from cauldron_fabric.delivery.dead_letters import record_dead_letters
from cauldron_fabric.delivery.jobs import purge_resolved_dead_letters, purge_settled_deliveries
from cauldron_fabric.delivery.recording import insert_deliveries
from cauldron_fabric.delivery.subscriptions import subscriptions_changed
from cauldron_fabric.delivery.worker import run_delivery_worker
from cauldron_fabric.testing.http_receiver import Reply
from cauldron_fabric.tests.test_delivery_support import (
	ReceiverCase,
	dead_letters,
	deliver,
	deliveries,
	save_todo,
)
from cauldron_fabric.tests.test_http_support import make_user, request
from cauldron_fabric.tests.test_registry_api import session
from cauldron_fabric.tests.utils import (
	assert_usage_error,
	fabric_settings,
	lose_connection_then_save_todo,
	start_fabric_command,
)


class TestDeadLetters(ReceiverCase):
	def refused(self, status: int):
		"""Delivers one event to a receiver answering ``status`` for good; returns (subscription, letter)."""
		path = f"/{self.tag}"
		self.receiver.reply(path, Reply(status))
		doc = self.subscription(webhook_url=self.receiver.url(path))
		save_todo(self.tag)
		deliver(doc.name)
		(letter,) = dead_letters(doc.name)
		return doc, letter

	def test_a_5xx_is_retried_with_the_same_webhook_id_and_then_delivered(self):
		path = f"/{self.tag}"
		self.receiver.reply(path, Reply(503, b"busy"))
		doc = self.subscription(webhook_url=self.receiver.url(path))
		save_todo(self.tag)
		(row,) = deliver(doc.name)
		self.assertEqual((row.status, row.attempts), ("Delivered", 2))
		first, second = self.receiver.on(path)
		self.assertEqual(first.headers["webhook-id"], second.headers["webhook-id"])
		self.assertEqual([a["status"] for a in json.loads(row.attempt_log)], ["Retrying", "Delivered"])
		self.assertEqual(dead_letters(doc.name), [])

	def test_a_refusing_receiver_ends_in_a_dead_letter_that_retry_delivers(self):
		path = f"/{self.tag}"
		self.receiver.reply(path, Reply(422, b"unprocessable"))
		doc = self.subscription(webhook_url=self.receiver.url(path))
		name = save_todo(self.tag)
		(row,) = deliver(doc.name)
		self.assertEqual((row.status, row.attempts, row.last_status_code), ("Dead", 1, 422))
		(letter,) = dead_letters(doc.name)
		self.assertEqual(
			(letter.status, letter.source_type, letter.reference), ("Dead", "Delivery", str(row.name))
		)
		self.assertEqual(
			(letter.event_type, letter.entity_id, letter.error_class), ("todo.created", name, "HTTP 422")
		)
		self.assertIn("refused the event with 422", letter.last_error)
		self.assertEqual(json.loads(letter.attempt_log)[0]["status_code"], 422)

		letter.retry()
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Retried")
		(row,) = deliver(doc.name)
		self.assertEqual((row.status, row.attempts), ("Delivered", 1))
		self.assertEqual(len(json.loads(row.attempt_log)), 2, "the history of the dead attempt was lost")
		self.assertEqual(len(self.receiver.on(path)), 2)

	def test_a_receivers_markup_is_kept_as_text_desk_cannot_run(self):
		# Desk's Event Delivery form renders last_error as HTML, and the worker writes it with SQL
		# (no sanitizing save): a receiver's reason phrase ran in the browser of the admin.
		path = f"/{self.tag}"
		self.receiver.reply(path, Reply(410, reason='<img src=x onerror="alert(1)">'))
		doc = self.subscription(webhook_url=self.receiver.url(path))
		save_todo(self.tag)
		(row,) = deliver(doc.name)
		self.assertEqual(row.status, "Dead")
		self.assertNotIn("<", row.last_error)
		self.assertIn("img src=x", row.last_error, "the receiver's answer is still told")

	def test_discarding_a_letter_already_retried_leaves_its_redelivery_alone(self):
		doc, letter = self.refused(422)  # 410 Gone would disable the subscription
		letter.retry()
		frappe.db.commit()
		letter.reload()
		with self.assertRaisesRegex(frappe.ValidationError, "Only a dead letter can be discarded"):
			letter.discard("tidying up the list")
		result = dead_letters_api.discard([letter.name])
		frappe.db.commit()
		self.assertEqual(result["done"], 0)
		(row,) = deliver(doc.name)
		self.assertEqual(row.status, "Delivered", "discarding a resolved letter cancelled its retry")
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Retried")

	def test_retries_run_out_into_a_dead_letter_listing_every_attempt(self):
		path = f"/{self.tag}"
		self.receiver.reply(path, *[Reply(500, b"down")] * 3)
		doc = self.subscription(webhook_url=self.receiver.url(path), max_attempts=3)
		save_todo(self.tag)
		(row,) = deliver(doc.name)
		self.assertEqual((row.status, row.attempts), ("Dead", 3))
		(letter,) = dead_letters(doc.name)
		self.assertTrue(letter.last_error.startswith("Gave up after 3 attempt(s)"))
		self.assertEqual([a["status_code"] for a in json.loads(letter.attempt_log)], [500, 500, 500])

	def test_loopback_is_refused_unless_allow_listed(self):
		path = f"/{self.tag}"
		doc = self.subscription(webhook_url=self.receiver.url(path))
		save_todo(self.tag)
		with fabric_settings(webhook_allowed_networks=""):
			(row,) = deliver(doc.name)
		self.assertEqual((row.status, row.attempts), ("Dead", 1))
		self.assertIn("a loopback address; webhooks to such addresses are refused", row.last_error)
		self.assertEqual(self.receiver.on(path), [], "a refused webhook reached the receiver")
		self.assertEqual(len(dead_letters(doc.name)), 1)

	def test_retry_all_matching_and_discard(self):
		path = f"/{self.tag}"
		self.receiver.reply(path, *[Reply(400, b"bad")] * 3)
		doc = self.subscription(webhook_url=self.receiver.url(path))
		other = self.subscription(webhook_url=self.receiver.url(path + "/other"), event_types="todo.updated")
		for _ in range(3):
			save_todo(self.tag)
		deliver(doc.name)
		letters = dead_letters(doc.name)
		self.assertEqual(len(letters), 3)

		self.assertEqual(dead_letters_api.discard([letters[0].name], "not needed")["done"], 1)
		frappe.db.commit()
		result = dead_letters_api.retry_matching({"subscription": doc.name, "status": "Retried"})
		frappe.db.commit()
		self.assertEqual((result["done"], result["failed"]), (2, []))
		rows = deliver(doc.name)
		self.assertEqual(sorted(r.status for r in rows), ["Delivered", "Delivered", "Discarded"])
		statuses = sorted(d.status for d in dead_letters(doc.name))
		self.assertEqual(statuses, ["Discarded", "Retried", "Retried"])
		self.assertEqual(deliveries(other.name), [])
		again = dead_letters_api.retry_matching({"subscription": doc.name})
		self.assertEqual(again["done"], 0, "retried letters were retried again")

	def test_a_bulk_call_naming_more_letters_than_retry_all_matching_takes_is_refused(self):
		# Retry all matching stops at 5,000 letters; a list of names had no bound, and a call
		# naming 100,000 ran letter after letter long past any request's timeout.
		names = [f"no-such-letter-{n}" for n in range(dead_letters_api.MAX_MATCHING + 1)]
		for action in (dead_letters_api.retry, dead_letters_api.discard):
			with self.subTest(action.__name__):
				with self.assertRaisesRegex(
					frappe.ValidationError, "names lists 5001 dead letters; at most 5000"
				):
					action(names)
		self.assertEqual(dead_letters_api.retry(names[:2])["failed"][1]["name"], names[1])

	def test_retry_explains_a_disabled_subscription(self):
		doc, letter = self.refused(404)
		frappe.db.set_value("Event Subscription", doc.name, "enabled", 0)
		with self.assertRaisesRegex(frappe.ValidationError, "is disabled. Enable it, then retry"):
			letter.retry()
		result = dead_letters_api.retry([letter.name])
		self.assertEqual(result["done"], 0)
		self.assertIn("is disabled", result["failed"][0]["error"])

	def test_a_subscription_with_history_can_be_deleted_and_its_pending_deliveries_become_dead_letters(self):
		# Its Event Delivery rows linked to it, so Frappe refused the delete: it could only be
		# disabled. History stays readable; what was still on its way is not dropped silently.
		doc, letter = self.refused(404)
		waiting = save_todo(self.tag)  # a delivery still pending when the subscription goes
		manager = session(make_user("fabric-delete-manager@example.com", ["Fabric Manager"]))
		response = request("delete", f"/api/resource/Event Subscription/{doc.name}", manager)
		self.assertEqual(response.status_code, 202, response.text)
		self.assertFalse(frappe.db.exists("Event Subscription", doc.name))

		rows = {json.loads(r.envelope)["data"]["entityId"]: r for r in deliveries(doc.name)}
		self.assertEqual(rows[waiting].status, "Dead")
		self.assertIn(f"Subscription {doc.name} was deleted", rows[waiting].last_error)
		self.assertEqual(len(rows), 2, "the delivery history was lost")
		new_letter = next(d for d in dead_letters(doc.name) if d.name != letter.name)
		self.assertIn("was deleted", new_letter.last_error)
		with self.assertRaisesRegex(frappe.ValidationError, "no longer exists.*Discard the dead letter"):
			new_letter.retry()

		# A process that routed with its copy from before the delete still queues for it: the
		# worker ends that delivery as dead instead of failing on it at every cycle.
		insert_deliveries([DeliveryRequest(doc.name, Envelope.from_json(new_letter.envelope))])
		frappe.db.commit()
		run_delivery_worker(stop_when_idle=True, max_seconds=5)
		self.assertEqual({r.status for r in deliveries(doc.name)}, {"Dead"})

		# Desk reads the history of a deleted subscription without a Server Error.
		seq = str(rows[waiting].name)
		form = request(
			"get", f"/api/method/frappe.desk.form.load.getdoc?doctype=Event Delivery&name={seq}", manager
		)
		self.assertEqual(form.status_code, 200, form.text)
		listing = request(
			"post",
			"/api/method/frappe.desk.reportview.get",
			manager,
			data={
				"doctype": "Event Delivery",
				"fields": json.dumps(["`tabEvent Delivery`.`name`", "`tabEvent Delivery`.`subscription`"]),
				"filters": json.dumps([["Event Delivery", "subscription", "=", doc.name]]),
			},
		)
		self.assertEqual(listing.status_code, 200, listing.text)

	def test_a_subscription_that_no_longer_compiles_shows_it_and_dead_letters_its_events(self):
		path = f"/{self.tag}"
		doc = self.subscription(webhook_url=self.receiver.url(path))
		# As an upgrade that tightened validation leaves it: stored, no longer compiling (a \u
		# escape without four hexadecimal digits), and every process loading it afresh.
		broken = f'data.payload.doc.description == "{self.tag}" or data.payload.doc.description == "\\u00e"'
		frappe.db.set_value("Event Subscription", doc.name, "condition", broken)
		subscriptions_changed()
		frappe.db.commit()
		save_todo(self.tag)
		self.assertEqual(len(deliveries(doc.name)), 1, "the event it would have matched was dropped")
		(row,) = deliver(doc.name)
		problem = frappe.db.get_value("Event Subscription", doc.name, "problem")
		self.assertIn("four hexadecimal digits", problem or "")
		self.assertEqual(row.status, "Dead")
		(letter,) = dead_letters(doc.name)
		self.assertIn(f"Subscription {doc.name!r} does not compile: Events:", letter.last_error)
		self.assertIn("four hexadecimal digits", letter.last_error)
		self.assertEqual(self.receiver.on(path), [])

		doc.reload()
		doc.condition = f'data.payload.doc.description == "{self.tag}"'
		doc.save()
		frappe.db.commit()
		self.assertFalse(frappe.db.get_value("Event Subscription", doc.name, "problem"))
		letter.reload()
		letter.retry()
		frappe.db.commit()
		(row,) = deliver(doc.name)
		self.assertEqual(row.status, "Delivered")
		self.assertEqual(len(self.receiver.on(path)), 1)

	def test_a_subscription_that_no_longer_compiles_can_be_disabled_but_not_enabled_unfixed(self):
		doc = self.subscription(webhook_url=self.receiver.url(f"/{self.tag}"))
		frappe.db.set_value(
			"Event Subscription", doc.name, "condition", 'data.payload.doc.description == "\\u00e"'
		)
		subscriptions_changed()
		frappe.db.commit()
		doc.reload()
		doc.enabled = 0
		doc.save()
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Event Subscription", doc.name, "enabled"), 0)
		self.assertIn(
			"four hexadecimal digits", frappe.db.get_value("Event Subscription", doc.name, "problem")
		)
		save_todo(self.tag)
		self.assertEqual(deliveries(doc.name), [], "a disabled subscription queued an event")

		doc.enabled = 1
		with self.assertRaisesRegex(frappe.ValidationError, "four hexadecimal digits"):
			doc.save()
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value("Event Subscription", doc.name, "enabled"), 0)

		# A new subscription is checked in full, enabled or not: its problems show when it is made.
		with self.assertRaisesRegex(frappe.ValidationError, "four hexadecimal digits"):
			self.subscription(
				webhook_url=self.receiver.url(f"/{self.tag}"),
				enabled=0,
				condition='data.payload.doc.description == "\\u00e"',
			)

	def test_only_fabric_managers_retry_or_discard(self):
		_, letter = self.refused(422)
		frappe.set_user(make_user("fabric-clerk@example.com", ["Blogger"]))
		self.assertRaises(frappe.PermissionError, letter.retry)
		self.assertRaises(frappe.PermissionError, letter.discard)
		self.assertRaises(frappe.PermissionError, dead_letters_api.retry, [letter.name])
		self.assertRaises(frappe.PermissionError, dead_letters_api.discard, [letter.name])
		self.assertRaises(frappe.PermissionError, dead_letters_api.retry_matching, {})
		frappe.set_user("Administrator")
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Dead")

	def test_a_dead_delivery_without_a_letter_gets_one_from_the_safety_net(self):
		path = f"/{self.tag}"
		self.receiver.reply(path, Reply(400))
		doc = self.subscription(webhook_url=self.receiver.url(path))
		save_todo(self.tag)
		deliver(doc.name)
		frappe.db.delete("Dead Letter", {"subscription": doc.name})  # as if the worker died after settling
		frappe.db.commit()
		self.assertGreaterEqual(record_dead_letters(), 1)
		self.assertEqual(len(dead_letters(doc.name)), 1)
		record_dead_letters()
		self.assertEqual(len(dead_letters(doc.name)), 1, "a second letter for the same death")


class TestDeliverCommand(ReceiverCase):
	def test_the_deliver_command_delivers_moments_after_commit_and_stops_on_sigterm(self):
		path = f"/{self.tag}"
		doc = self.subscription(webhook_url=self.receiver.url(path))
		worker = start_fabric_command("deliver", "--seconds", "60")
		try:
			time.sleep(3)  # started and subscribed to wake-ups
			save_todo(self.tag)
			committed = time.monotonic()
			(request,) = self.receiver.wait_for(path, 1, timeout=10)
			self.assertLess(request.started - committed, 5, "not delivered promptly after the commit")
		finally:
			worker.send_signal(signal.SIGTERM)
			_, stderr = worker.communicate(timeout=30)
		self.assertEqual(worker.returncode, 0, stderr)
		self.assertIn(f"fabric delivery worker for {frappe.local.site} stopped", stderr)
		self.assertEqual([r.status for r in deliveries(doc.name)], ["Delivered"])

	def test_the_deliver_command_refuses_a_batch_size_out_of_range(self):
		for size in ("-3", "0", "5001"):
			with self.subTest(size=size):
				stderr = assert_usage_error(self, "deliver", "--batch-size", size, "--seconds", "5")
				self.assertIn("--batch-size", stderr)

	def test_z_a_database_connection_lost_under_the_worker_delays_deliveries_without_stopping_it(self):
		# Named to run last in its class: it kills this test process's own database connection.
		path = f"/{self.tag}"
		doc = self.subscription(webhook_url=self.receiver.url(path))
		saver = lose_connection_then_save_todo(self.tag)
		with patch.object(worker_module, "SETTINGS_RECHECK_SECONDS", 0.5):
			run_delivery_worker(max_seconds=12)
		saver.join()
		self.assertEqual(len(self.receiver.wait_for(path, 1, timeout=5)), 1)
		self.assertEqual([r.status for r in deliveries(doc.name)], ["Delivered"])


class TestRetentionOfDeliveryRecords(FrappeTestCase):
	def aged_rows(self, doctype: str, statuses: tuple[str, ...]) -> list[str]:
		"""Inserts one row per status, 400 days old; deleted again after the test."""
		names = []
		for status in statuses:
			row = frappe.get_doc(
				{
					"doctype": doctype,
					"status": status,
					"subscription": "retention-test",
					"event_id": frappe.generate_hash(),
					"event_type": "todo.created",
				}
			)
			row.db_insert()
			names.append(row.name)
		frappe.db.sql(
			f"UPDATE `tab{doctype}` SET modified = NOW() - INTERVAL 400 DAY WHERE name IN %s", (tuple(names),)
		)
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, doctype, {"subscription": "retention-test"})
		return names

	def test_settled_records_go_after_the_retention_and_open_ones_stay(self):
		letters = self.aged_rows("Dead Letter", ("Dead", "Retrying", "Retried", "Discarded"))
		rows = self.aged_rows("Event Delivery", ("Pending", "Dead", "Delivered", "Discarded"))
		with fabric_settings(retention_days=0):  # no retention set: nothing is deleted
			purge_resolved_dead_letters()
			purge_settled_deliveries()
		self.assertEqual(frappe.db.count("Dead Letter", {"name": ("in", letters)}), 4)
		self.assertEqual(frappe.db.count("Event Delivery", {"name": ("in", rows)}), 4)
		with fabric_settings(retention_days=30):
			purge_resolved_dead_letters()
			purge_settled_deliveries()
		left = frappe.get_all("Dead Letter", filters={"name": ("in", letters)}, pluck="status")
		self.assertEqual(sorted(left), ["Dead", "Retrying"])
		left = frappe.get_all("Event Delivery", filters={"name": ("in", rows)}, pluck="status")
		self.assertEqual(sorted(left), ["Dead", "Pending"])
