"""Publishing into the fabric over real HTTP with an API key, as n8n's HTTP Request node does:
what is recorded, and repeats and races answered for the recorded event.
"""

from __future__ import annotations

import json
import threading
import time

import frappe
import pymysql
from frappe.tests.utils import patch_hooks
from frappe.utils import get_test_client, now_datetime

from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.outbox.statements import build_append
from cauldron_fabric.core.ports import OutboxAppend
from cauldron_fabric.core.schema import catalog_entry
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.tests.test_approval_support import approval_requested, receive
from cauldron_fabric.tests.test_delivery_publish_support import URL, PublishCase
from cauldron_fabric.tests.test_delivery_support import deliveries, make_subscription, remove_subscription
from cauldron_fabric.tests.test_http_support import request
from cauldron_fabric.tests.utils import events_after

APPROVE = "/api/method/cauldron_fabric.api.approvals.approve"


def mark_response(response=None, request=None) -> None:
	"""An after_request hook of another app, listed after the fabric's."""
	response.headers["X-Later-Hook"] = "ran"


class TestPublishApi(PublishCase):
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

	def test_a_correlation_id_that_cannot_be_a_header_is_answered_in_the_body_only(self):
		# An event's correlationId may be any text without markup; a line break in it cannot go
		# into the X-Correlation-ID response header (the server would fail writing it), nor
		# can text beyond ASCII travel in a header everywhere.
		for number, correlation in enumerate(("flow\r\nX-Injected: 1", "заказ-42")):
			with self.subTest(correlation=correlation):
				entity_id = f"{self.tag}-{number}"
				body = {
					"type": "lore.article.published",
					"source": "lore",
					"data": {
						"entity": "Article",
						"entityId": entity_id,
						"action": "published",
						"payload": {},
					},
					"metadata": {"correlationId": correlation},
				}
				# The app's after_request hook must not fail: the hooks after it (other apps') would
				# not run.
				later = [*frappe.get_hooks("after_request"), f"{__name__}.mark_response"]
				with patch_hooks({"after_request": later}):
					response = self.publish(body)
				self.assertEqual(response.status_code, 200, response.text)
				self.assertEqual(response.json["message"]["correlationId"], correlation)
				self.assertNotIn("X-Correlation-ID", response.headers)
				self.assertNotIn("X-Injected", response.headers)
				self.assertEqual(response.headers.get("X-Later-Hook"), "ran")
				(event,) = events_after(self.start, "Article", entity_id)
				self.assertEqual(event["metadata"]["correlationId"], correlation)

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
		# No header was sent: the one returned names the event's own conversation.
		self.assertEqual([r.headers.get("X-Correlation-ID") for r in (first, second)], ["c-1", "c-1"])
		(event,) = events_after(self.start, "Article", self.tag)
		self.assertEqual((event["id"], event["source"]), (body["id"], "lore"))
		self.assertEqual(event["metadata"]["userId"], self.publisher, "the caller's claim replaced the user")

	def test_a_publisher_cannot_decide_the_request_it_published(self):
		body = approval_requested(users=(self.publisher,), roles=("Fabric Publisher",)).to_dict()
		body.pop("metadata")
		self.assertEqual(self.publish(body).status_code, 200)
		(recorded,) = [e for e in events_after(self.start) if e["type"] == "agent.approval.requested"]
		self.assertEqual(recorded["metadata"]["userId"], self.publisher)
		name = receive(Envelope.from_dict(recorded))  # as the consumer hands it to the handler
		response = request("post", APPROVE, data={"name": name}, headers={"Authorization": self.token})
		self.assertEqual(response.status_code, 403, response.text)
		self.assertEqual(frappe.db.get_value("Approval Request", name, "status"), "Pending")
		self.assertEqual(frappe.db.get_value("Approval Request", name, "requested_by"), self.publisher)

	def test_a_repeat_is_answered_for_the_recorded_event_and_a_reused_id_is_refused(self):
		body = {
			"id": frappe.generate_hash(length=20),
			"type": "lore.article.published",
			"data": {"entity": "Article", "entityId": self.tag, "payload": {}},
		}
		first = self.publish(body, **{"X-Correlation-ID": "flow-11"})
		self.assertEqual(first.status_code, 200, first.text)
		# The answer was lost and the client sends the same event again, without the header this
		# time: it must learn the conversation its event is in, not a new one nobody uses.
		retry = self.publish(body)
		self.assertEqual(retry.status_code, 200, retry.text)
		self.assertEqual(retry.json["message"], {**first.json["message"], "duplicate": True})
		# Another event under an id already taken is not a retry: it would be dropped unseen.
		other = {**body, "type": "lore.article.archived", "data": {**body["data"], "entityId": "other"}}
		response = self.publish(other)
		self.assertEqual(response.status_code, 422, response.text)
		self.assertIn("already", response.json["exception"])
		(event,) = [e for e in events_after(self.start) if e["id"] == body["id"]]
		self.assertEqual((event["type"], event["metadata"]["correlationId"]), (body["type"], "flow-11"))

	def test_a_publish_racing_itself_answers_for_the_event_that_won(self):
		# The first request's row is written but not committed when the second checks for the id;
		# the second's INSERT waits on the unique key, then finds the id taken.
		body = {
			"id": frappe.generate_hash(length=20),
			"type": "lore.article.published",
			"data": {"entity": "Article", "entityId": self.tag, "action": "published", "payload": {}},
		}
		winner = Envelope.from_dict(
			{
				**body,
				"source": f"{current_policy().source}/api",
				"time": "2030-01-01T00:00:00Z",
				"metadata": {
					"correlationId": "flow-won",
					"userId": self.publisher,
					"tenantId": frappe.local.site,
				},
			}
		)
		sql, params = build_append(
			[OutboxAppend(winner, pending=False)], actor=self.publisher, now=now_datetime()
		)
		other = pymysql.connect(
			host=frappe.conf.db_host or "127.0.0.1",
			port=int(frappe.conf.db_port or 3306),
			user=frappe.conf.db_name,
			password=frappe.conf.db_password,
			database=frappe.conf.db_name,
			autocommit=False,
		)
		self.addCleanup(other.close)
		with other.cursor() as cursor:
			cursor.execute(sql, params)
		answers, client, site = [], get_test_client(), frappe.local.site
		headers = {"X-Frappe-Site-Name": site, "Authorization": self.token, "X-Correlation-ID": "flow-lost"}
		racer = threading.Thread(target=lambda: answers.append(client.post(URL, json=body, headers=headers)))
		racer.start()
		time.sleep(1.5)  # the second request is now waiting on the first one's row
		other.commit()
		racer.join()
		frappe.db.rollback()  # see what the request committed
		(response,) = answers
		self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual(
			response.json["message"],
			{"eventId": body["id"], "type": body["type"], "correlationId": "flow-won", "duplicate": True},
		)
		self.assertEqual([e["id"] for e in events_after(self.start, "Article", self.tag)], [body["id"]])
