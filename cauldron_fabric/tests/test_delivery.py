"""Delivery on a real site: its statistics, its table, and the Fabric Settings that steer it."""

from __future__ import annotations

import re

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from cauldron_fabric.core.delivery import create_table_sql
from cauldron_fabric.tests.test_delivery_support import DeliveryTestCase
from cauldron_fabric.tests.utils import fabric_settings


class TestDeliveryStats(DeliveryTestCase):
	def delivered(self, subscription: str, latencies: list[float]) -> None:
		from cauldron_fabric.core.delivery import DeliveryRequest, build_enqueue
		from cauldron_fabric.emit.recorder import new_envelope

		envelopes = [
			new_envelope("subscription.test", "Event Subscription", subscription, "test", {})
			for _ in latencies
		]
		sql, params = build_enqueue(
			[DeliveryRequest(subscription, e) for e in envelopes], actor="Administrator", now=now_datetime()
		)
		frappe.db.sql(sql, params)
		for envelope, latency in zip(envelopes, latencies, strict=True):
			frappe.db.sql(
				"""UPDATE `tabEvent Delivery` SET status = 'Delivered', attempts = 1, last_latency_ms = %s
				WHERE subscription = %s AND event_id = %s""",
				(latency, subscription, envelope.id),
			)
		frappe.db.commit()

	def test_latency_percentiles_are_nearest_rank(self):
		from cauldron_fabric.delivery.stats import subscription_stats

		doc = self.subscription(webhook_url="https://a.example.com/hook")
		empty = subscription_stats(doc.name)
		self.assertEqual((empty["counts"], empty["latencyMs"]), ({}, {"p50": None, "p95": None, "max": None}))
		self.delivered(doc.name, [float(ms) for ms in range(1, 21)])
		# Of 20 latencies 1..20 ms, the median is the 10th and the 95th percentile the 19th:
		# a p95 that is always the maximum says nothing the maximum does not.
		stats = subscription_stats(doc.name)
		self.assertEqual(stats["counts"], {"Delivered": 20})
		self.assertEqual(stats["latencyMs"], {"p50": 10.0, "p95": 19.0, "max": 20.0})

	def test_the_median_of_two_latencies_is_not_the_slower_one(self):
		from cauldron_fabric.delivery.stats import subscription_stats

		doc = self.subscription(webhook_url="https://a.example.com/hook")
		self.delivered(doc.name, [10.0, 900.0])
		self.assertEqual(subscription_stats(doc.name)["latencyMs"]["p50"], 10.0)


class TestDeliveryTable(FrappeTestCase):
	def test_the_doctype_has_the_columns_of_the_core_store(self):
		suffix = frappe.generate_hash(length=6)
		table, sequence = f"tabEvent Delivery check {suffix}", f"event_delivery_check_{suffix}_seq"
		for statement in create_table_sql(table, sequence):
			frappe.db.sql_ddl(statement)
		try:
			core = self._columns(table)
			doctype = self._columns("tabEvent Delivery")
		finally:
			frappe.db.sql_ddl(f"DROP TABLE IF EXISTS `{table}`")
			frappe.db.sql_ddl(f"DROP SEQUENCE IF EXISTS `{sequence}`")
		for column, shape in core.items():
			self.assertEqual(doctype.get(column), shape, f"column {column}")
		indexes = {row[2] for row in frappe.db.sql("SHOW INDEX FROM `tabEvent Delivery`")}
		self.assertLessEqual(
			{"fabric_subscription_event", "fabric_delivery_due", "fabric_delivery_order"}, indexes
		)

	def _columns(self, table: str) -> dict[str, tuple]:
		rows = frappe.db.sql(f"SHOW COLUMNS FROM `{table}`")
		# Type without display width (int(11) and int are the same column), nullability.
		return {row[0]: (re.sub(r"^(int|bigint)\(\d+\)", r"\1", row[1]), row[2]) for row in rows}

	def test_deliveries_cannot_be_edited_through_the_orm(self):
		doc = frappe.new_doc("Event Delivery")
		doc.subscription = "x"
		self.assertRaises(frappe.ValidationError, doc.insert, ignore_permissions=True)


class TestFabricSettingsForDelivery(FrappeTestCase):
	def test_rabbitmq_url_must_be_amqp_without_a_password(self):
		for bad, message in (
			("http://rabbit:5672", "not an amqp:// or amqps:// URL"),
			("amqp://guest:secret@rabbit:5672/%2F", "contains a password"),
			("amqp://guest@rabbit:99999/%2F", "invalid port"),
		):
			settings = frappe.get_single("Fabric Settings")
			settings.rabbitmq_url = bad
			self.assertRaisesRegex(frappe.ValidationError, message, settings.save)

	def test_a_rabbitmq_user_without_a_password_is_refused_by_the_broker_not_a_crash(self):
		# pika cannot parse amqp://user@host: the safety net raised "malformed URL" every minute
		# and the relay command exited, where the broker's refusal should show on the event.
		from cauldron_fabric.emit.scheduled import relay_pending_events

		with fabric_settings(bootstrap_servers="", rabbitmq_url="amqp://guest@127.0.0.1:5672/%2F"):
			todo = frappe.get_doc({"doctype": "ToDo", "description": "user without password"}).insert()
			frappe.db.commit()
			relay_pending_events()
			frappe.db.rollback()
			status, error = frappe.db.get_value(
				"Event Log", {"entity": "ToDo", "entity_id": todo.name}, ["status", "last_error"]
			)
		self.assertEqual(status, "Pending")
		self.assertIn("refused user 'guest'", error)
		frappe.db.delete("Event Log", {"entity": "ToDo", "entity_id": todo.name})
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

	def test_the_webhook_allow_list_is_checked(self):
		settings = frappe.get_single("Fabric Settings")
		settings.webhook_allowed_networks = "10.0.0.0/8\nnot a host!"
		self.assertRaisesRegex(frappe.ValidationError, "neither a network nor a host name", settings.save)

	def test_a_rabbitmq_url_alone_turns_publishing_on(self):
		from cauldron_fabric.emit.policy import current_policy

		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			self.assertFalse(current_policy().publishing)
			with fabric_settings(rabbitmq_url="amqp://guest@127.0.0.1:5672/%2F"):
				self.assertTrue(current_policy().publishing)

	def test_a_transport_that_cannot_open_leaves_no_password_in_the_error_log(self):
		# The Error Log keeps each frame's variables; Frappe hides those named like a password,
		# not a connection tuple whose URL carries the RabbitMQ password.
		from cauldron_fabric.delivery.worker import run_delivery_worker

		password = "Rabbit-" + frappe.generate_hash(length=12)
		since = now_datetime()
		broken = "amqp://guest@127.0.0.1:5672/%2F?heartbeat=abc"  # pika refuses it when opened
		with fabric_settings(rabbitmq_url=broken, rabbitmq_password=password):
			run_delivery_worker(stop_when_idle=True, max_seconds=1)
		frappe.db.rollback()
		logs = frappe.get_all(
			"Error Log",
			filters={"method": ("like", "%cannot open the amqp transport%"), "creation": (">=", since)},
			pluck="error",
		)
		self.assertTrue(logs, "the worker said nothing of the transport it could not open")
		self.assertIn("heartbeat", logs[0])
		self.assertEqual([log for log in logs if password in log], [])
