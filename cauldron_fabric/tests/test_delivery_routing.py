"""Routing on a real site: the deliveries a save queues, in its transaction, for the subscriptions every process has."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import frappe

from cauldron_fabric.api import subscriptions as subscriptions_api
from cauldron_fabric.delivery import subscriptions as routing
from cauldron_fabric.tests.test_delivery_support import (
	COMMIT_THROUGH_PROXY,
	DeliveryTestCase,
	HeldRedisWrite,
	deliveries,
	make_subscription,
	new_subscription,
	save_todo,
)
from cauldron_fabric.tests.test_registry_support import refuse_the_next_commit
from cauldron_fabric.tests.utils import SQL_LOOKALIKE_TEXT


class TestRouting(DeliveryTestCase):
	def test_a_test_event_is_queued_for_its_subscription_alone_and_refused_while_disabled(self):
		doc = self.subscription(webhook_url="https://a.example.com/hook")
		other = self.subscription(webhook_url="https://b.example.com/hook")
		event_id = subscriptions_api.send_test_event(doc.name)["eventId"]
		frappe.db.commit()
		self.assertEqual(
			[(d.event_type, json.loads(d.envelope)["id"]) for d in deliveries(doc.name)],
			[("subscription.test", event_id)],
		)
		self.assertEqual(deliveries(other.name), [])
		doc.enabled = 0
		doc.save()
		with self.assertRaisesRegex(frappe.ValidationError, "is disabled: enable it"):
			subscriptions_api.send_test_event(doc.name)

	def test_a_subscription_whose_commit_was_refused_routes_nothing(self):
		refuse_the_next_commit()
		doc = new_subscription(self.tag, webhook_url="https://refused.example.com/hook")
		self.created.append(doc.name)
		frappe.get_doc({"doctype": "ToDo", "description": self.tag}).insert()  # routed in its snapshot
		with self.assertRaises(frappe.ValidationError):
			frappe.db.commit()
		frappe.db.rollback()
		save_todo(self.tag)
		self.assertEqual(deliveries(doc.name), [], "a rolled-back subscription still gets deliveries")

	def test_a_save_queues_one_delivery_per_matching_subscription_in_its_transaction(self):
		first = self.subscription(webhook_url="https://a.example.com/hook")
		second = self.subscription(webhook_url="https://b.example.com/hook", event_types="todo.updated")
		other = self.subscription(webhook_url="https://c.example.com/hook", condition='data.entity == "Note"')
		frappe.get_doc({"doctype": "ToDo", "description": self.tag}).insert()
		frappe.db.rollback()
		self.assertEqual(deliveries(first.name), [], "a rolled-back save queued a delivery")

		name = save_todo(self.tag)
		todo = frappe.get_doc("ToDo", name)
		todo.status = "Closed"
		todo.save()
		frappe.db.commit()
		self.assertEqual([r.event_type for r in deliveries(first.name)], ["todo.created", "todo.updated"])
		self.assertEqual([r.event_type for r in deliveries(second.name)], ["todo.updated"])
		self.assertEqual(deliveries(other.name), [])
		self.assertEqual({r.status for r in deliveries(first.name)}, {"Pending"})

	def test_a_queued_delivery_carries_the_document_text_unaltered(self):
		doc = self.subscription(webhook_url="https://a.example.com/hook", condition="")
		name = save_todo(f"{self.tag} {SQL_LOOKALIKE_TEXT}")
		stored = frappe.db.get_value("ToDo", name, "description")
		self.assertIn("IFNULL(", stored)
		(delivery,) = deliveries(doc.name)
		self.assertEqual(json.loads(delivery.envelope)["data"]["payload"]["doc"]["description"], stored)

	def test_the_index_is_reused_until_a_subscription_change_commits(self):
		self.subscription(webhook_url="https://a.example.com/hook")
		index = routing.routing_index()
		frappe.local.fabric_subscriptions_checked = 0.0  # as in a new request
		self.assertIs(routing.routing_index(), index, "rebuilt without any change")
		before = routing.current_version()
		added = self.subscription(webhook_url="https://b.example.com/hook", event_types="todo.*\nnote.*")
		self.assertNotEqual(routing.current_version(), before, "the version did not change on commit")
		rebuilt = routing.routing_index()
		self.assertIsNot(rebuilt, index)
		self.assertIn(added.name, [s.name for s, _ in rebuilt.entries])

	def test_a_change_is_published_after_redis_dropped_the_counter(self):
		# Frappe's cache Redis evicts keys under memory pressure (allkeys-lru): the counter, used
		# only at a change, can go while the token, read at every check, stays. Counting again
		# from 1 under that token's number, no change would be published for a long while.
		doc = self.subscription(webhook_url="https://a.example.com/hook")
		frappe.cache.delete(frappe.cache.make_key(routing.SEQUENCE_KEY))
		doc.max_attempts = 4
		doc.save()
		frappe.db.commit()
		self.assertEqual(
			routing.state_of(routing.current_version()),
			routing.stored_version(),
			"Redis names a state from before the change",
		)

	def test_a_subscription_saved_during_a_request_is_routed_by_the_next_requests(self):
		# Another process commits a subscription while this one is inside a request whose
		# transaction already read something (REPEATABLE READ: its snapshot predates the
		# subscription). The next request must route to the subscription all the same.
		routing.routing_index()
		frappe.local.fabric_subscriptions_checked = 0.0  # a new request...
		frappe.db.sql("SELECT name FROM `tabToDo` LIMIT 1")  # ...whose snapshot is now taken
		site, sites_path, made = frappe.local.site, frappe.local.sites_path, []

		def admin_saves_a_subscription() -> None:
			frappe.init(site=site, sites_path=sites_path)
			frappe.connect()
			try:
				frappe.set_user("Administrator")
				made.append(make_subscription(self.tag, webhook_url="https://a.example.com/hook").name)
			finally:
				frappe.destroy()

		thread = threading.Thread(target=admin_saves_a_subscription)
		thread.start()
		thread.join()
		self.created += made
		save_todo(self.tag)  # still in the old snapshot: this one may miss the subscription
		frappe.local.fabric_subscriptions_checked = 0.0  # the next request
		name = save_todo(self.tag)
		routed = [json.loads(r.envelope)["data"]["entityId"] for r in deliveries(made[0])]
		self.assertIn(name, routed, "a committed subscription is ignored by this process for good")

	def test_processes_settle_on_the_last_committed_subscription_change(self):
		# Process A commits a change and writes its token to Redis; process B commits another
		# change and publishes its token while A's write is on its way, so A's write lands last.
		# Redis must still name the newest state, or every process reloads at every check.
		first = self.subscription(webhook_url="https://a.example.com/hook")
		second = self.subscription(webhook_url="https://b.example.com/hook")
		with HeldRedisWrite() as proxy:
			process_a = subprocess.Popen(
				[sys.executable, "-c", COMMIT_THROUGH_PROXY, frappe.local.site, proxy.url, first.name],
				cwd=frappe.local.sites_path,
				stdin=subprocess.PIPE,
				stdout=subprocess.PIPE,
				text=True,
			)
			self.assertEqual(process_a.stdout.readline().strip(), "saved")
			proxy.hold_next_write()
			process_a.stdin.write("commit\n")
			process_a.stdin.flush()
			self.assertTrue(proxy.held.wait(30), "process A wrote nothing to Redis after its commit")
			second.reload()
			second.max_attempts = 4
			second.save()
			frappe.db.commit()  # process B, start to end, while A's write waits
			proxy.release.set()
			self.assertEqual(process_a.wait(timeout=30), 0)
		routing._compiled.pop(frappe.local.site, None)
		frappe.local.fabric_subscriptions_checked = 0.0
		index = routing.routing_index()
		frappe.local.fabric_subscriptions_checked = 0.0  # the next request
		self.assertIs(routing.routing_index(), index, "Redis names an older state than the database")

	def test_ordered_subscriptions_key_deliveries_by_document(self):
		doc = self.subscription(webhook_url="https://a.example.com/hook", keep_order=1)
		name = save_todo(self.tag)
		(row,) = frappe.db.sql(
			"SELECT ordering_key FROM `tabEvent Delivery` WHERE subscription = %s", (doc.name,)
		)
		self.assertEqual(row[0], f"ToDo/{name}")
