"""Webhook endpoints on a real site: 410 Gone disables the subscription, saying why on its form and
in its timeline; an endpoint that is down opens its circuit in Redis, shown as a Fabric Circuit,
and its deliveries wait instead of spending their attempts."""

from __future__ import annotations

import frappe

from cauldron_fabric.cauldron_fabric.doctype.fabric_circuit.fabric_circuit import (
	FabricCircuit,
	reset_webhook_circuit,
)
from cauldron_fabric.core.delivery.circuit import endpoint_of
from cauldron_fabric.delivery.worker import run_delivery_worker
from cauldron_fabric.testing.http_receiver import Reply
from cauldron_fabric.testing.kafka_broker import free_port
from cauldron_fabric.tests.test_delivery_support import (
	ReceiverCase,
	dead_letters,
	deliver,
	deliveries,
	save_todo,
)


class TestWebhookEndpoints(ReceiverCase):
	def test_a_receiver_answering_410_gone_disables_its_subscription_saying_why(self):
		path = f"/gone-{self.tag}"
		self.receiver.reply(path, Reply(410, b"workflow deleted"))
		subscription = self.subscription(webhook_url=self.receiver.url(path), keep_order=1)
		todo = save_todo(self.tag)
		doc = frappe.get_doc("ToDo", todo)
		doc.priority = "High"
		doc.save()
		frappe.db.commit()
		first, second = deliver(subscription.name)
		self.assertEqual((first.status, first.last_status_code), ("Dead", 410))
		self.assertIn("answered 410 Gone, so the receiver says this URL is gone for good", first.last_error)
		self.assertIn("was disabled at", first.last_error)
		self.assertIn("enable the subscription, then retry its dead letters", first.last_error)
		# Queued behind it, the entity's next event follows the disabled-subscription rule.
		self.assertEqual((second.status, second.attempts), ("Dead", 1))
		self.assertIn("is disabled; enable it, then retry", second.last_error)
		self.assertEqual(len(self.receiver.on(path)), 1, "nothing more is sent to a gone receiver")
		stored = frappe.get_doc("Event Subscription", subscription.name)
		self.assertEqual(stored.enabled, 0)
		self.assertIn("answered 410 Gone", stored.disabled_reason)
		comments = frappe.get_all(
			"Comment",
			filters={"reference_doctype": "Event Subscription", "reference_name": subscription.name},
			pluck="content",
		)
		self.assertTrue(any("410 Gone" in c for c in comments), comments)
		self.assertEqual(len(dead_letters(subscription.name)), 2)
		stored.enabled = 1
		stored.save()
		frappe.db.commit()
		self.assertIsNone(frappe.db.get_value("Event Subscription", subscription.name, "disabled_reason"))

	def test_an_endpoint_that_is_down_opens_its_circuit_and_its_deliveries_wait(self):
		url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connection refused
		endpoint = endpoint_of(url)
		self.addCleanup(reset_webhook_circuit, endpoint)
		subscription = self.subscription(webhook_url=url, max_attempts=3)
		for _ in range(6):
			save_todo(self.tag)
		run_delivery_worker(stop_when_idle=True, max_seconds=5)
		rows = deliveries(subscription.name)
		self.assertEqual(
			{row.status for row in rows}, {"Pending"}, "an outage spends no attempt into a dead letter"
		)
		self.assertTrue(all(row.attempts <= 2 for row in rows), [row.attempts for row in rows])
		circuits = {row.target: row for row in FabricCircuit.get_list({})}
		self.assertEqual((circuits[endpoint].kind, circuits[endpoint].state), ("Webhook endpoint", "open"))
		self.assertGreaterEqual(circuits[endpoint].failures, 5)
		self.assertEqual(frappe.get_doc("Fabric Circuit", endpoint).kind, "Webhook endpoint")
		reset_webhook_circuit(endpoint)
		self.assertNotIn(endpoint, {row.target for row in FabricCircuit.get_list({})})
