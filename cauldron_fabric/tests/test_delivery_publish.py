"""Publishing into the fabric over real HTTP with an API key, as n8n's HTTP Request node does."""

from __future__ import annotations

import json

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.core.schema import catalog_entry
from cauldron_fabric.tests.test_delivery_support import (
	deliveries,
	make_subscription,
	marker,
	remove_subscription,
)
from cauldron_fabric.tests.test_http import api_token, make_user, request
from cauldron_fabric.tests.utils import events_after, last_seq

URL = "/api/method/cauldron_fabric.api.publish.publish"


class TestPublishApi(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.publisher = make_user("fabric-publisher@example.com", ["Fabric Publisher"])
		cls.token = api_token(cls.publisher)
		cls.clerk_token = api_token(make_user("fabric-clerk@example.com", ["Blogger"]))

	def setUp(self):
		frappe.set_user("Administrator")
		self.start = last_seq()
		self.tag = marker()

	def publish(self, body, token=None, **headers):
		headers = {"Authorization": token or self.token, **headers}
		return request("post", URL, json=body, headers=headers)

	def test_a_minimal_event_is_recorded_and_reaches_subscriptions(self):
		subscription = make_subscription(
			self.tag,
			event_types="agent.task.*",
			condition="",
			webhook_url="https://n8n.example.com/webhook/x",
		)
		self.addCleanup(remove_subscription, subscription.name)
		body = {
			"type": "agent.task.created",
			# The catalog's own example: agent.task.created has a registered schema.
			"data": {
				"entity": "Agent Task",
				"entityId": self.tag,
				"payload": dict(catalog_entry("agent.task.created").examples[0]),
			},
		}
		response = self.publish(body, **{"X-Correlation-ID": "flow-7"})
		self.assertEqual(response.status_code, 200, response.text)
		answer = response.json["message"]
		(event,) = events_after(self.start, "Agent Task", self.tag)
		self.assertEqual(event["id"], answer["eventId"])
		self.assertEqual(event["data"]["action"], "created")
		self.assertEqual(event["metadata"]["userId"], self.publisher)
		self.assertEqual(event["metadata"]["correlationId"], "flow-7")
		(row,) = deliveries(subscription.name)
		self.assertEqual(json.loads(row.envelope)["id"], answer["eventId"])

	def test_a_full_envelope_keeps_its_id_and_a_repeat_is_recorded_once(self):
		body = {
			"id": frappe.generate_hash(length=20),
			"type": "lore.article.published",
			"source": "lore",
			"time": "2030-01-01T10:00:00Z",
			"specVersion": "1.0",
			"data": {"entity": "Article", "entityId": self.tag, "action": "published", "payload": {}},
			"metadata": {"correlationId": "c-1", "causationId": "e-0", "userId": "spoofed@example.com"},
		}
		first, second = self.publish(body), self.publish(body)
		self.assertEqual((first.status_code, second.status_code), (200, 200), first.text)
		self.assertEqual(second.json["message"], {**first.json["message"], "duplicate": True})
		(event,) = events_after(self.start, "Article", self.tag)
		self.assertEqual((event["id"], event["source"]), (body["id"], "lore"))
		self.assertEqual(event["metadata"]["userId"], self.publisher, "the caller's claim replaced the user")

	def test_bad_events_get_422_listing_every_problem(self):
		response = self.publish({"type": "Not A Type", "data": {"entity": "", "payload": []}, "extra": 1})
		self.assertEqual(response.status_code, 422, response.text)
		message = json.loads(json.loads(response.json["_server_messages"])[0])["message"]
		for problem in (
			"unknown field 'extra'",
			"must be dot-separated lower-case words",
			"'data.entity' is required",
			"'data.entityId' is required",
			"'data.payload' must be an object",
		):
			self.assertIn(problem, message)
		self.assertEqual(self.publish({"type": "x.y", "data": "not json"}).status_code, 422)
		self.assertEqual(self.publish({}).status_code, 422)
		self.assertEqual(events_after(self.start), [])

	def test_only_publishers_and_managers_may_publish(self):
		body = {
			"type": "agent.task.created",
			"data": {"entity": "Agent Task", "entityId": "x", "payload": {}},
		}
		self.assertEqual(request("post", URL, json=body).status_code, 403)
		self.assertEqual(self.publish(body, token=self.clerk_token).status_code, 403)
		self.assertEqual(request("get", URL, headers={"Authorization": self.token}).status_code, 403)
		self.assertEqual(events_after(self.start), [])
