"""Publishing over real HTTP: who may publish, how large an event and how many calls a minute."""

from __future__ import annotations

import time

import frappe

from cauldron_fabric.tests.test_delivery_publish_support import URL, PublishCase
from cauldron_fabric.tests.test_http_support import api_token, make_user, request
from cauldron_fabric.tests.utils import events_after, fabric_settings


class TestPublishLimits(PublishCase):
	def test_the_size_limit_counts_bytes_not_escaped_characters(self):
		# 100,000 emoji: 400 KB of UTF-8, well under the 512 KiB limit, but 1.2 million
		# characters once JSON escapes each as a surrogate pair.
		text = "\U0001f9ea" * 100_000
		body = {
			"type": "lore.note.saved",
			"data": {"entity": "Note", "entityId": self.tag, "payload": {"text": text}},
		}
		response = self.publish(body)
		self.assertEqual(response.status_code, 200, response.text[:300])
		(event,) = events_after(self.start, "Note", self.tag)
		self.assertEqual(event["data"]["payload"]["text"], text)
		too_big = {**body, "data": {**body["data"], "payload": {"text": "x" * (520 * 1024)}}}
		response = self.publish(too_big)
		self.assertEqual(response.status_code, 422)
		self.assertIn("larger than 512 KiB", response.text)

	def test_a_publisher_over_its_calls_per_minute_gets_429_with_retry_after(self):
		# One publisher in a loop must not fill the outbox for everyone; the limit counts per user
		# and minute (in Redis, shared by every web worker), so wait out the end of a minute.
		if (second := time.time() % 60) > 50:
			time.sleep(61 - second)
		other = api_token(make_user("fabric-publisher-2@example.com", ["Fabric Publisher"]))
		data = {"entity": "Note", "entityId": self.tag, "action": "saved", "payload": {}}
		body = {"type": "lore.note.saved", "data": data}
		with fabric_settings(publish_rate_limit=2):
			answers = [self.publish(body).status_code for _ in range(2)]
			refused = self.publish(body)
			self.assertEqual(self.publish(body, token=other).status_code, 200, "limited per user")
		self.assertEqual(answers, [200, 200])
		self.assertEqual(refused.status_code, 429, refused.text)
		self.assertIn("more than 2 calls this minute", refused.json["exception"])
		self.assertTrue(1 <= int(refused.headers["Retry-After"]) <= 60, refused.headers)
		self.assertEqual(len(events_after(self.start, "Note", self.tag)), 3)
		with fabric_settings(publish_rate_limit=0):
			self.assertEqual(self.publish(body).status_code, 200, "0 turns the limit off")

	def test_settings_saved_before_the_limit_existed_get_the_default(self):
		from cauldron_fabric.patches.publish_calls_are_limited_by_default import execute

		field = "publish_rate_limit"
		self.addCleanup(frappe.db.rollback)
		frappe.db.delete("Singles", {"doctype": "Fabric Settings", "field": field})
		frappe.db.value_cache.pop("Fabric Settings", None)
		self.assertEqual(frappe.db.get_single_value("Fabric Settings", field), 0, "read as no limit")
		execute()
		frappe.db.value_cache.pop("Fabric Settings", None)
		self.assertEqual(frappe.db.get_single_value("Fabric Settings", field), 600)

	def test_only_publishers_and_managers_may_publish(self):
		body = {
			"type": "agent.task.created",
			"data": {"entity": "Agent Task", "entityId": "x", "payload": {}},
		}
		self.assertEqual(request("post", URL, json=body).status_code, 403)
		self.assertEqual(self.publish(body, token=self.clerk_token).status_code, 403)
		self.assertEqual(request("get", URL, headers={"Authorization": self.token}).status_code, 403)
		self.assertEqual(events_after(self.start), [])
