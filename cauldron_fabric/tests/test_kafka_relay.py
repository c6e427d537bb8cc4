"""From a real site to a real Kafka-protocol broker: order, the relays woken at commit, the API."""

from __future__ import annotations

import json

import frappe
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import events as events_api
from cauldron_fabric.api import settings as settings_api
from cauldron_fabric.core.outbox.statements import EVENT_COLUMNS
from cauldron_fabric.services.relay import relay_channel
from cauldron_fabric.testing.kafka_broker import free_port, read_topic
from cauldron_fabric.tests.test_kafka_relay_support import KafkaRelayCase, event_status, relay_until_idle
from cauldron_fabric.tests.utils import ORDER, fabric_settings, last_seq, new_order


class TestPublishingToKafka(KafkaRelayCase):
	def test_committed_lifecycle_reaches_kafka_in_order_and_a_rollback_never_does(self):
		order = new_order("to kafka")
		frappe.db.commit()
		order.title = "to kafka v2"
		order.save()
		order.submit()
		frappe.db.commit()
		rolled_back = (
			f"rolled back {frappe.generate_hash(length=8)}"  # other tests' leftovers may say "rolled back"
		)
		new_order(rolled_back)
		frappe.db.rollback()
		order.reload()
		order.cancel()
		frappe.db.commit()
		renamed = frappe.rename_doc(ORDER, order.name, order.name + "-k")
		frappe.db.commit()
		frappe.delete_doc(ORDER, renamed)
		frappe.db.commit()
		relay_until_idle()

		ours = {f"{ORDER}/{order.name}": 4, f"{ORDER}/{renamed}": 2}

		def all_ours_arrived(received):
			keys = [m.key().decode() for m in received]
			return all(keys.count(key) >= count for key, count in ours.items())

		# The topic may also hold other tests' leftover events; wait for this test's ones.
		messages = read_topic(
			self.broker.bootstrap, f"{self.prefix}.fabric_test_order", 6, until=all_ours_arrived
		)
		by_key: dict[str, list[str]] = {}
		for message in messages:
			by_key.setdefault(message.key().decode(), []).append(json.loads(message.value())["type"])
		self.assertEqual(
			by_key[f"{ORDER}/{order.name}"],
			[
				"fabric_test_order.created",
				"fabric_test_order.updated",
				"fabric_test_order.submitted",
				"fabric_test_order.cancelled",
			],
		)
		self.assertEqual(
			by_key[f"{ORDER}/{renamed}"], ["fabric_test_order.renamed", "fabric_test_order.deleted"]
		)
		titles = {json.loads(m.value())["data"]["payload"]["doc"]["title"] for m in messages}
		self.assertNotIn(rolled_back, titles)

		first = messages[0]
		sdk_event = ce_kafka.from_binary(
			ce_kafka.KafkaMessage(headers=dict(first.headers()), key=first.key(), value=first.value()),
			JSONFormat(),
		)
		self.assertEqual(sdk_event.get_id(), json.loads(first.value())["id"])
		self.assertEqual(sdk_event.get_extension("tenantid"), frappe.local.site)

		key = f"{ORDER}/{order.name}".encode()

		def both_arrived(received):
			return len([m for m in received if m.key() == key]) >= 2

		business = read_topic(self.broker.bootstrap, f"{self.prefix}.business", 2, until=both_arrived)
		self.assertEqual(
			[json.loads(m.value())["data"]["action"] for m in business if m.key() == key],
			["submitted", "cancelled"],
		)
		rows = event_status(order.name) + event_status(renamed)
		self.assertEqual({row[1] for row in rows}, {"Published"})

	def test_a_commit_wakes_the_relays_once_and_a_rollback_never_does(self):
		pubsub = frappe.cache.pubsub(ignore_subscribe_messages=True)
		pubsub.subscribe(relay_channel())
		try:
			self.assertIsNone(pubsub.get_message(timeout=0.2))  # subscribed, nothing waiting
			for n in range(3):
				frappe.get_doc({"doctype": "ToDo", "description": f"wake {n}"}).insert()
			frappe.db.rollback()
			self.assertIsNone(pubsub.get_message(timeout=1), "a rollback woke the relays")
			todos = [
				frappe.get_doc({"doctype": "ToDo", "description": f"wake {n}"}).insert() for n in range(3)
			]
			frappe.db.commit()
			woken = [pubsub.get_message(timeout=5), pubsub.get_message(timeout=1)]
			self.assertEqual([message and message["data"] for message in woken], [b"1", None])
		finally:
			pubsub.close()
		for todo in todos:
			frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

	def test_a_commit_refused_by_a_before_commit_callback_leaves_later_commits_waking_the_relays(self):
		# Frappe drops the after-rollback callbacks before it runs the before-commit ones, so a
		# commit that one of them refuses is rolled back without the fabric being told.
		def refuse() -> None:
			raise frappe.ValidationError("refused by a before_commit callback")

		pubsub = frappe.cache.pubsub(ignore_subscribe_messages=True)
		pubsub.subscribe(relay_channel())
		try:
			self.assertIsNone(pubsub.get_message(timeout=0.2))  # subscribed, nothing waiting
			frappe.get_doc({"doctype": "ToDo", "description": "refused commit"}).insert()
			frappe.db.before_commit.add(refuse)
			with self.assertRaises(frappe.ValidationError):
				frappe.db.commit()
			frappe.db.rollback()
			self.assertIsNone(pubsub.get_message(timeout=1), "a refused commit woke the relays")
			todo = frappe.get_doc({"doctype": "ToDo", "description": "after a refused commit"}).insert()
			frappe.db.commit()
			woken = pubsub.get_message(timeout=5)
			self.assertEqual(woken and woken["data"], b"1", "the next commit did not wake the relays")
		finally:
			pubsub.close()
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

	def test_api_lists_events_with_delivery_status_and_requeues_failed_ones(self):
		todo = frappe.get_doc({"doctype": "ToDo", "description": "api"}).insert()
		frappe.db.commit()
		relay_until_idle()
		listed = events_api.list_events(entity="ToDo", entity_id=todo.name)["events"]
		self.assertEqual([e["status"] for e in listed], ["Published"])
		self.assertEqual(listed[0]["topic"], f"{self.prefix}.todo")
		event_id = listed[0]["envelope"]["id"]
		self.assertEqual(events_api.get_event(event_id)["envelope"]["data"]["entityId"], todo.name)
		self.assertTrue(events_api.list_events(event_type="todo.*", limit=1)["events"])

		frappe.db.sql("UPDATE `tabEvent Log` SET status = 'Failed' WHERE event_id = %s", (event_id,))
		self.assertEqual(events_api.requeue([event_id]), {"requeued": 1})
		frappe.db.commit()
		relay_until_idle()
		self.assertEqual(events_api.get_event(event_id)["status"], "Published")
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

	def test_connection_test_reports_what_it_found(self):
		report = settings_api.test_connection()
		self.assertTrue(report["ok"], report)
		self.assertIn("broker(s)", report["summary"])
		with fabric_settings(bootstrap_servers=f"127.0.0.1:{free_port()}"):
			report = settings_api.test_connection()
		self.assertFalse(report["ok"])
		self.assertIn("No Kafka broker answered", report["summary"])


class TestEventLogTable(FrappeTestCase):
	def test_the_doctype_has_every_column_the_outbox_writes(self):
		columns = set(frappe.db.get_table_columns("Event Log"))
		self.assertLessEqual(set(EVENT_COLUMNS), columns)
		indexes = {row[2] for row in frappe.db.sql("SHOW INDEX FROM `tabEvent Log`")}
		self.assertLessEqual({"fabric_status_seq", "fabric_key_seq"}, indexes)

	def test_events_are_immutable_through_the_orm(self):
		todo = frappe.get_doc({"doctype": "ToDo", "description": "immutable"}).insert()
		name = frappe.db.get_value("Event Log", {"entity_id": todo.name})
		event = frappe.get_doc("Event Log", name)
		event.event_type = "forged.event"
		self.assertRaises(frappe.ValidationError, event.save)
		self.assertGreater(name, 0)
		self.assertGreater(last_seq(), 0)
