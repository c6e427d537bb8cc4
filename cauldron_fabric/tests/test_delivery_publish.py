"""Publishing into the fabric over real HTTP with an API key, as n8n's HTTP Request node does."""

from __future__ import annotations

import json
import threading
import time

import frappe
import pymysql
from frappe.tests.utils import FrappeTestCase
from frappe.utils import get_test_client, now_datetime

from cauldron_fabric.api import publish as publish_api
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.outbox.statements import build_append
from cauldron_fabric.core.ports import OutboxAppend
from cauldron_fabric.core.schema import catalog_entry
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.tests.test_approval_support import APPROVER, approval_requested, ensure_people, receive
from cauldron_fabric.tests.test_delivery_support import (
	deliveries,
	make_subscription,
	marker,
	remove_subscription,
)
from cauldron_fabric.tests.test_http_support import api_token, make_user, request
from cauldron_fabric.tests.utils import ensure_custom_doctype, events_after, fabric_settings, last_seq

URL = "/api/method/cauldron_fabric.api.publish.publish"
APPROVE = "/api/method/cauldron_fabric.api.approvals.approve"


class TestPublishApi(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.publisher = make_user("fabric-publisher@example.com", ["Fabric Publisher"])
		cls.token = api_token(cls.publisher)
		cls.clerk_token = api_token(make_user("fabric-clerk@example.com", ["Blogger"]))
		ensure_people()

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
		# No header was sent: the one returned names the event's own conversation.
		self.assertEqual([r.headers.get("X-Correlation-ID") for r in (first, second)], ["c-1", "c-1"])
		(event,) = events_after(self.start, "Article", self.tag)
		self.assertEqual((event["id"], event["source"]), (body["id"], "lore"))
		self.assertEqual(event["metadata"]["userId"], self.publisher, "the caller's claim replaced the user")

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

	def test_an_event_its_schema_refuses_gets_422_even_where_saves_keep_such_events(self):
		# "Record as invalid" lets a save go through and keeps its event Invalid, never published.
		# A publisher has no save to protect: answered 200, it would think its event was sent.
		body = {
			"type": "agent.task.created",
			"data": {"entity": "Agent Task", "entityId": self.tag, "payload": {}},
		}
		with fabric_settings(invalid_event_policy="Record as invalid"):
			response = self.publish(body)
		self.assertEqual(response.status_code, 422, response.text)
		self.assertIn("does not match its schema", response.json["exception"])
		self.assertEqual(events_after(self.start, "Agent Task", self.tag), [])

	def test_metadata_that_is_no_object_is_refused_not_dropped(self):
		# Dropped, the caller's correlation and causation ids were lost while it was told 200.
		data = {"entity": "Note", "entityId": self.tag, "payload": {}}
		for metadata in ([{"correlationId": "flow-7"}], "[1]", 5):
			with self.subTest(metadata=metadata):
				response = self.publish({"type": "lore.note.saved", "data": data, "metadata": metadata})
				self.assertEqual(response.status_code, 422, response.text)
				self.assertIn("'metadata' must be an object", response.json["exception"])
		self.assertEqual(events_after(self.start, "Note", self.tag), [])

	def test_a_time_that_is_not_rfc_3339_is_refused(self):
		# CloudEvents' time is RFC 3339: other ISO 8601 forms would reach consumers in ce_time
		# and fail their SDKs.
		data = {"entity": "Note", "entityId": self.tag, "payload": {}}
		for moment in ("20261127T140000Z", "2026-W48-5T14:00:00Z", "2026-11-27T14:00:00+0100"):
			with self.subTest(time=moment):
				response = self.publish({"type": "lore.note.saved", "time": moment, "data": data})
				self.assertEqual(response.status_code, 422, response.text)
				self.assertIn("RFC 3339", response.json["exception"])
		self.assertEqual(events_after(self.start, "Note", self.tag), [])
		accepted = self.publish(
			{"type": "lore.note.saved", "time": "2026-11-27T14:00:00.5+01:00", "data": data}
		)
		self.assertEqual(accepted.status_code, 200, accepted.text)

	def test_markup_in_an_attribute_desk_shows_is_refused_not_recorded(self):
		# The Event Log keeps these attributes in Data columns, which Desk's list and form render as
		# HTML (Frappe sanitizes on save; the outbox INSERT does not): a publisher's markup would
		# run in the browser of every admin who opens the Event Log.
		script = '<img src=x onerror="alert(document.cookie)">'
		data = {"entity": "Note", "entityId": self.tag, "action": "saved", "payload": {"note": script}}
		metadata = {"correlationId": "flow-7", "causationId": "cause-7", "tenantId": "acme"}
		for attribute in (
			"id",
			"source",
			"data.entity",
			"data.entityId",
			"data.action",
			"metadata.correlationId",
			"metadata.causationId",
			"metadata.tenantId",
		):
			with self.subTest(attribute=attribute):
				body = {
					"type": "lore.note.saved",
					"source": "lore",
					"data": dict(data),
					"metadata": dict(metadata),
				}
				key, _, field = attribute.partition(".")
				if field:
					body[key][field] = script
				else:
					body[key] = script
				response = self.publish(body)
				self.assertEqual(response.status_code, 422, response.text)
				self.assertIn(f"'{attribute}' may not contain < or >", response.json["exception"])
		self.assertEqual(events_after(self.start), [])
		# Markup inside the payload is data, kept as sent (Desk shows the envelope as code).
		response = self.publish({"type": "lore.note.saved", "data": data})
		self.assertEqual(response.status_code, 200, response.text)
		(event,) = events_after(self.start, "Note", self.tag)
		self.assertEqual(event["data"]["payload"]["note"], script)

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

	def test_the_sites_own_event_types_and_source_are_refused(self):
		pending = receive(approval_requested())
		self.start = last_seq()
		decision = {
			"requestId": pending,
			"decision": "approved",
			"decidedBy": APPROVER,
			"decidedAt": "2030-01-01T00:00:00Z",
		}
		forged = {
			# a decision nobody made, in the request's conversation
			"approval.response": {"entity": "Approval Request", "entityId": pending, "payload": decision},
			"todo.created": {"entity": "ToDo", "entityId": "T-1", "payload": {}},  # a DocType's lifecycle
			"user.login": {"entity": "User", "entityId": APPROVER, "payload": {}},
		}
		for event_type, data in forged.items():
			response = self.publish({"type": event_type, "data": data})
			self.assertEqual(response.status_code, 422, response.text)
			self.assertIn("only", response.json["exception"])
		site = {
			"type": "warehouse_robot.moved",
			"source": current_policy().source,
			"data": {"entity": "Robot", "entityId": "R-1", "payload": {}},
		}
		response = self.publish(site)
		self.assertEqual(response.status_code, 422, response.text)
		self.assertIn("is this site's own; leave it out", response.json["exception"])
		self.assertEqual(events_after(self.start), [])
		self.assertEqual(frappe.db.get_value("Approval Request", pending, "status"), "Pending")
		# A lifecycle type of no DocType here, and the site's /api source, stay open to publishers.
		for body in (
			{
				"type": "purchase_ledger.created",
				"data": {"entity": "Ledger", "entityId": "L-1", "payload": {}},
			},
			{**site, "source": current_policy().source + "/api"},
		):
			response = self.publish(body)
			self.assertEqual(response.status_code, 200, response.text)

	def test_the_sites_source_is_refused_in_every_spelling_of_its_uri(self):
		# Scheme and host of a URI are case-insensitive, and a query, fragment, port, user or
		# trailing dot leave its host the same: a consumer that reads the source as a URI takes
		# each of these for the site itself.
		self.start = last_seq()
		site = current_policy().source
		scheme, host = site.split("://", 1)
		for source in (
			site.upper(),
			f"{site}?from=api",
			f"{site}#api",
			f"{scheme}://{host.upper()}/orders",
			f"{scheme}://robot@{host}/orders",
			f"{scheme}://{host}:80/orders",
			f"{scheme}://{host}./orders",
			f" {site}",
		):
			body = {
				"type": "warehouse_robot.moved",
				"source": source,
				"data": {"entity": "Robot", "entityId": "R-1", "payload": {}},
			}
			response = self.publish(body)
			self.assertEqual(response.status_code, 422, f"{source!r}: {response.text}")
			self.assertIn("is this site's own; leave it out", response.json["exception"])
		self.assertEqual(events_after(self.start), [])
		other = {
			"type": "warehouse_robot.moved",
			"source": f"{scheme}://{host}-robots/orders",
			"data": {"entity": "Robot", "entityId": "R-1", "payload": {}},
		}
		self.assertEqual(
			self.publish(other).status_code, 200, "another host that shares the prefix is not the site"
		)

	def test_a_new_doctypes_lifecycle_is_refused_at_once(self):
		name = "Fabric Test Robot Log"
		if frappe.db.exists("DocType", name):
			frappe.delete_doc("DocType", name, force=True)
		frappe.cache.delete_value(publish_api.DOMAINS_KEY)
		body = {"type": "fabric_test_robot_log.created", "data": {"entity": name, "entityId": "1"}}
		self.assertEqual(self.publish({**body, "data": {**body["data"], "payload": {}}}).status_code, 200)
		self.assertNotIn("fabric_test_robot_log", publish_api.doctype_domains())  # cached now
		ensure_custom_doctype(name, [{"fieldname": "note", "fieldtype": "Data", "label": "Note"}])
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "DocType", name, force=True)
		response = self.publish({**body, "data": {**body["data"], "entityId": "2", "payload": {}}})
		self.assertEqual(response.status_code, 422, response.text)

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
