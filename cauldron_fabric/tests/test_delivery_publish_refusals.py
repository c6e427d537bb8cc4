"""Publishing over real HTTP: events refused with 422 and every problem named, nothing recorded."""

from __future__ import annotations

import json

import frappe

from cauldron_fabric.api import publish as publish_api
from cauldron_fabric.core.envelope import MAX_PAYLOAD_DEPTH
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.tests.test_approval_support import APPROVER, approval_requested, receive
from cauldron_fabric.tests.test_delivery_publish_support import URL, PublishCase
from cauldron_fabric.tests.test_http_support import request
from cauldron_fabric.tests.utils import ensure_custom_doctype, events_after, fabric_settings, last_seq


class TestPublishRefusals(PublishCase):
	def post_json_text(self, text: str):
		"""Posts ``text`` as it is (JSON the test client would not write); checks it was refused."""
		response = request(
			"post", URL, data=text, content_type="application/json", headers={"Authorization": self.token}
		)
		self.assertEqual(response.status_code, 422, response.text)
		return response

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
		for metadata in ([{"correlationId": "flow-7"}], "[1]", 5, []):
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

	def test_the_sites_own_types_with_a_trailing_line_break_are_refused(self):
		# "approval.response\n" passed the type's pattern ("$" matches before a final line
		# break) and then no check of the site's own types: recorded, it reached every
		# subscription to approval.* as a decision nobody made.
		pending = receive(approval_requested())
		self.start = last_seq()
		forged = {
			"approval.response\n": {"entity": "Approval Request", "entityId": pending, "payload": {}},
			"todo.updated\n": {"entity": "ToDo", "entityId": "T-1", "payload": {}},
			"system.change\n": {"entity": "DocType", "entityId": "ToDo", "payload": {}},
		}
		for event_type, data in forged.items():
			with self.subTest(type=event_type):
				response = self.publish({"type": event_type, "data": data})
				self.assertEqual(response.status_code, 422, response.text)
				self.assertIn("must be dot-separated lower-case words", response.json["exception"])
		self.assertEqual(events_after(self.start), [])

	def test_attributes_of_the_wrong_kind_get_422_not_500(self):
		data = {"entity": "Note", "entityId": self.tag, "payload": {}}
		for extra, problem in (
			({"dataSchema": 5}, "'dataSchema' must be a string when given"),
			({"dataSchema": {"id": 1}}, "'dataSchema' must be a string when given"),
			({"dataContentType": 5}, "'dataContentType' must be a string when given"),
			({"dataContentType": "text/plain"}, "'dataContentType' must be a JSON media type"),
		):
			with self.subTest(extra=extra):
				response = self.publish({"type": "lore.note.saved", "data": data, **extra})
				self.assertEqual(response.status_code, 422, response.text)
				self.assertIn(problem, response.json["exception"])
		self.assertEqual(events_after(self.start, "Note", self.tag), [])
		typed = self.publish(
			{"type": "lore.note.saved", "data": data, "dataContentType": "application/json; charset=utf-8"}
		)
		self.assertEqual(typed.status_code, 200, typed.text)

	def test_a_key_named_twice_is_refused_not_read_last_wins(self):
		# Frappe's parser kept the last value without a word: "entityId" twice sent the second,
		# while a gateway or audit log reading the same bytes may have kept the first.
		twice = (
			'{"type": "lore.note.saved", "data": {"entity": "Note", "entityId": "A-1", '
			f'"entityId": "{self.tag}", "payload": {{}}}}}}'
		)
		response = self.post_json_text(twice)
		self.assertIn("the key 'entityId' appears twice in one object", response.json["exception"])
		# Form-encoded, the objects come as JSON text: the same rule.
		response = request(
			"post",
			URL,
			data={"type": "lore.note.saved", "data": twice.split('"data": ', 1)[1][:-1]},
			headers={"Authorization": self.token},
		)
		self.assertEqual(response.status_code, 422, response.text)
		self.assertIn("'data': the key 'entityId' appears twice", response.json["exception"])
		self.assertEqual(events_after(self.start, "Note", self.tag), [])

	def test_a_lone_surrogate_is_refused_as_such_not_as_a_number(self):
		# Before: refused as "NaN or an infinite number", which sent the caller looking for a number.
		good = json.dumps(
			{
				"type": "lore.note.saved",
				"data": {"entity": "Note", "entityId": self.tag, "payload": {"x": "y"}},
			}
		)
		for where, lone in (("payload", '"x": "\\ud800"'), ("entity", '"entity": "Note\\udc00"')):
			with self.subTest(where=where):
				text = good.replace('"x": "y"' if where == "payload" else '"entity": "Note"', lone)
				self.assertIn("\\ud", text)
				response = self.post_json_text(text)
				self.assertIn("not valid Unicode (a lone surrogate", response.json["exception"])
				self.assertNotIn("NaN", response.json["exception"])
		self.assertEqual(events_after(self.start, "Note", self.tag), [])

	def test_nan_and_infinite_numbers_are_refused_not_sent_as_null(self):
		# Frappe's request parser reads these tokens; the event went out with null instead.
		data = {"entity": "Note", "entityId": self.tag}
		for label, body in (
			(
				"NaN",
				json.dumps({"type": "lore.note.saved", "data": {**data, "payload": {"x": float("nan")}}}),
			),
			(
				"-Infinity",
				json.dumps({"type": "lore.note.saved", "data": {**data, "payload": {"x": [float("-inf")]}}}),
			),
			(
				"1e999",
				json.dumps({"type": "lore.note.saved", "data": {**data, "payload": {"x": 0}}}).replace(
					'"x": 0', '"x": 1e999'
				),
			),
		):
			with self.subTest(label=label):
				self.assertIn(label, body)
				response = self.post_json_text(body)
				self.assertIn("NaN or an infinite number (such as 1e999)", response.json["exception"])
		self.assertEqual(events_after(self.start, "Note", self.tag), [])
		fine = self.publish({"type": "lore.note.saved", "data": {**data, "payload": {"x": 1.5e300}}})
		self.assertEqual(fine.status_code, 200, fine.text)

	def test_a_payload_nested_hundreds_deep_gets_422_not_500(self):
		# Serialising it recursed past Python's stack (RecursionError), and Frappe's error log
		# with it: the caller got the debugger's HTML page.
		for levels in (MAX_PAYLOAD_DEPTH + 1, 450):
			payload: dict = {"leaf": 1}
			for _ in range(levels - 1):
				payload = {"a": payload}
			data = {"entity": "Note", "entityId": self.tag, "payload": payload}
			with self.subTest(levels=levels):
				response = self.publish({"type": "lore.note.saved", "data": data})
				self.assertEqual(response.status_code, 422, response.text)
				self.assertIn(f"more than {MAX_PAYLOAD_DEPTH} levels deep", response.json["exception"])
		self.assertEqual(events_after(self.start, "Note", self.tag), [])

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
