"""Who sees an approval request, over real HTTP requests: names never tell who may not see them."""

from __future__ import annotations

import json
from dataclasses import replace

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.tests.test_approval_support import (
	APPROVER,
	APPROVER_ROLE,
	MANAGER,
	approval_requested,
	ensure_people,
	receive,
)
from cauldron_fabric.tests.test_http_support import api_token, make_user, request

METHOD = "/api/method/cauldron_fabric.api.approvals."
SHARED_READER = "shared.reader@fabric.test"
STRANGER = "approval.stranger@fabric.test"
LATE_HOLDER = "late.role.holder@fabric.test"
WEBSITE_USER = "portal.user@fabric.test"
FORM = "/api/method/frappe.desk.form.load.getdoc"
LIST_VIEW = "/api/method/frappe.desk.reportview.get"
LINK_CHECK = "/api/method/frappe.client.validate_link"
GET = "/api/method/frappe.client.get"
DOCINFO = "/api/method/frappe.desk.form.load.get_docinfo"
RUN = "/api/method/run_doc_method"


def answer(response, name: str) -> tuple:
	"""Returns what a response tells the caller: status, error type and messages, the name masked."""
	body = response.json or {}
	messages = [json.loads(m).get("message") for m in json.loads(body.get("_server_messages") or "[]")]
	return (
		response.status_code,
		body.get("exc_type"),
		[str(m).replace(name, "<name>") for m in messages],
	)


class TestApprovalRequestVisibility(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_people()
		cls.tokens = {
			user: api_token(make_user(user, ["Blogger"])) for user in (SHARED_READER, STRANGER, LATE_HOLDER)
		}
		cls.tokens[MANAGER] = api_token(MANAGER)

	def setUp(self):
		make_user(LATE_HOLDER, ["Blogger"])  # holds the approver role only once a test gives it

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()

	def give_approver_role_late(self) -> None:
		"""Gives LATE_HOLDER the approver role after the requests were made: no share, no ToDo."""
		frappe.get_doc("User", LATE_HOLDER).add_roles(APPROVER_ROLE)
		frappe.db.commit()
		self.addCleanup(make_user, LATE_HOLDER, ["Blogger"])  # or it is assigned later requests

	def open_form(self, user: str, name: str):
		query = {"doctype": "Approval Request", "name": name}
		return request("get", FORM, headers={"Authorization": self.tokens[user]}, query_string=query)

	def list_view(self, user: str, names: list[str]) -> list[str]:
		"""Returns which of ``names`` the user's list view of Approval Request shows."""
		query = {
			"doctype": "Approval Request",
			"fields": json.dumps(["`tabApproval Request`.`name`"]),
			"filters": json.dumps([["Approval Request", "name", "in", names]]),
			"page_length": 100,
		}
		response = request("get", LIST_VIEW, headers={"Authorization": self.tokens[user]}, query_string=query)
		self.assertEqual(response.status_code, 200, response.text)
		message = response.json.get("message") or {}
		return sorted(row[0] for row in message.get("values", []))

	def test_a_holder_of_an_approver_role_opens_the_request_in_desk(self):
		# The role came after the request was assigned: no share, yet the holder may decide it,
		# so /app/approval-request/<name> must open for it, and for nobody it does not name.
		name = receive(approval_requested(users=(), roles=(APPROVER_ROLE,)))
		self.give_approver_role_late()
		self.assertFalse(frappe.db.exists("DocShare", {"share_name": name, "user": LATE_HOLDER}))
		form = self.open_form(LATE_HOLDER, name)
		self.assertEqual(form.status_code, 200, form.text)
		self.assertEqual(form.json["docs"][0]["name"], name)
		self.assertFalse(self.open_form(STRANGER, name).json.get("docs"), "opens as a missing one")

	def test_the_list_view_shows_approvers_their_requests_and_others_none(self):
		mine = receive(approval_requested(users=(), roles=(APPROVER_ROLE,)))
		others = receive(approval_requested(users=(APPROVER,), roles=()))
		own = approval_requested(users=(), roles=(APPROVER_ROLE,))
		own = receive(replace(own, metadata=replace(own.metadata, user_id=LATE_HOLDER)))  # four eyes
		frappe.share.add_docshare(
			"Approval Request", others, SHARED_READER, flags={"ignore_share_permission": True}
		)
		self.give_approver_role_late()
		names = [mine, others, own]
		self.assertEqual(self.list_view(LATE_HOLDER, names), [mine])
		self.assertEqual(self.list_view(SHARED_READER, names), [others], "a share still shows")
		self.assertEqual(self.list_view(STRANGER, names), [])
		self.assertEqual(self.list_view(MANAGER, names), sorted(names))
		self.assertFalse(self.open_form(LATE_HOLDER, own).json.get("docs"), "its own request: four eyes")

	def call(self, user: str, method: str, name: str):
		verb = "get" if method == "get_request" else "post"
		body = {"query_string": {"name": name}} if verb == "get" else {"json": {"name": name}}
		return request(verb, METHOD + method, headers={"Authorization": self.tokens[user]}, **body)

	def test_a_missing_name_answers_as_a_request_the_caller_may_not_see(self):
		# A user who may read one shared request must not learn from the answers which other
		# request ids exist: missing and not-yours get the same status and message.
		shared, hidden = receive(approval_requested()), receive(approval_requested())
		frappe.share.add_docshare(
			"Approval Request", shared, SHARED_READER, flags={"ignore_share_permission": True}
		)
		frappe.db.commit()
		missing = "APR-TEST-MISSING-" + frappe.generate_hash(length=6).upper()
		for user in (SHARED_READER, STRANGER):
			for method in ("get_request", "approve", "reject"):
				existing = answer(self.call(user, method, hidden), hidden)
				self.assertEqual(existing[0], 403, (user, method, existing))
				self.assertEqual(answer(self.call(user, method, missing), missing), existing, (user, method))
		self.assertEqual(self.call(SHARED_READER, "get_request", shared).status_code, 200)
		self.assertEqual(
			self.call(MANAGER, "get_request", missing).status_code, 404, "a reader of every request is told"
		)
		self.assertEqual(frappe.db.get_value("Approval Request", hidden, "status"), "Pending")

	def test_a_link_check_answers_a_hidden_request_as_a_missing_one(self):
		# Every desk user reads Approval Request, so Desk's link check (frappe.client.validate_link,
		# which needs only that) answers any of them; it must not tell which request ids exist.
		hidden = receive(approval_requested())
		missing = "APR-TEST-MISSING-" + frappe.generate_hash(length=6).upper()

		def link_check(user: str, name: str, fields: list[str] | None = None):
			query = {"doctype": "Approval Request", "docname": name}
			if fields:
				query["fields"] = json.dumps(fields)
			response = request(
				"get", LINK_CHECK, headers={"Authorization": self.tokens[user]}, query_string=query
			)
			return response.status_code, answer(response, name), response.json.get("message")

		for fields in (None, ["status"]):
			self.assertEqual(link_check(STRANGER, hidden, fields), link_check(STRANGER, missing, fields))
		self.assertEqual(
			link_check(MANAGER, hidden)[2], {"name": hidden}, "a reader of every request is told"
		)

	def test_opening_a_hidden_request_answers_as_opening_a_missing_one(self):
		# Desk's form (getdoc) and frappe.client.get answered 403 for a request the caller may not
		# see and 404 (or nothing) for a missing name: the difference told which request ids exist.
		hidden = receive(approval_requested())
		missing = "APR-TEST-MISSING-" + frappe.generate_hash(length=6).upper()

		def opened(path: str, name: str) -> tuple:
			query = {"doctype": "Approval Request", "name": name}
			response = request(
				"get", path, headers={"Authorization": self.tokens[STRANGER]}, query_string=query
			)
			return (*answer(response, name), response.json.get("message"), response.json.get("docs"))

		def by_filters(name: str) -> tuple:
			query = {"doctype": "Approval Request", "filters": json.dumps({"name": name})}
			response = request(
				"get", GET, headers={"Authorization": self.tokens[STRANGER]}, query_string=query
			)
			return answer(response, name)

		for path in (FORM, GET, DOCINFO):
			self.assertEqual(opened(path, hidden), opened(path, missing), path)
		self.assertEqual(by_filters(hidden), by_filters(missing))

		def ran(name: str, by_docs: bool) -> tuple:
			target = {
				"docs": json.dumps({"doctype": "Approval Request", "name": name, "modified": "2020-01-01"})
			}
			if not by_docs:
				target = {"dt": "Approval Request", "dn": name}
			response = request(
				"post",
				RUN,
				headers={"Authorization": self.tokens[STRANGER]},
				json={"method": "run_method", **target},
			)
			return answer(response, name)

		for by_docs in (False, True):
			self.assertEqual(ran(hidden, by_docs), ran(missing, by_docs), f"run_doc_method, docs: {by_docs}")
		self.assertEqual(by_filters(missing)[0], 404)
		self.assertEqual(self.open_form(MANAGER, hidden).json["docs"][0]["name"], hidden)

	def test_approver_rows_list_only_for_requests_the_caller_may_see(self):
		# Every desk user reads Approval Request, so Frappe lets any of them list its child table:
		# the rows name each request (parent) and who decides it.
		hidden = receive(approval_requested(users=(APPROVER,), roles=()))
		shared = receive(approval_requested(users=(APPROVER,), roles=()))
		frappe.share.add_docshare(
			"Approval Request", shared, SHARED_READER, flags={"ignore_share_permission": True}
		)
		frappe.db.commit()
		names = json.dumps([["parent", "in", [hidden, shared]]])

		def rows(user: str) -> list:
			query = {
				"doctype": "Approval Request Approver",
				"parent": "Approval Request",
				"fields": json.dumps(["parent", "approver"]),
				"filters": names,
			}
			response = request(
				"get",
				"/api/method/frappe.client.get_list",
				headers={"Authorization": self.tokens[user]},
				query_string=query,
			)
			self.assertEqual(response.status_code, 200, response.text)
			return response.json["message"]

		self.assertEqual(rows(STRANGER), [])
		self.assertEqual([row["parent"] for row in rows(SHARED_READER)], [shared])
		self.assertEqual(sorted(row["parent"] for row in rows(MANAGER)), sorted([hidden, shared]))

	def test_the_sidebar_counts_assignees_only_of_the_requests_the_caller_may_see(self):
		# The list sidebar's "Assigned To" counts the assignments (ToDos) of the requests the
		# filters match: for a name no request has, nobody; for a request the caller may not see,
		# nobody either, or the answer tells the id exists and who decides it.
		hidden = receive(approval_requested(users=(APPROVER,), roles=()))
		missing = "APR-TEST-MISSING-" + frappe.generate_hash(length=6).upper()

		def assignees(user: str, name: str, operator: str = "=") -> list:
			query = {
				"doctype": "Approval Request",
				"current_filters": json.dumps([["Approval Request", "name", operator, name]]),
				"field": "assigned_to",
			}
			response = request(
				"get",
				"/api/method/frappe.desk.listview.get_group_by_count",
				headers={"Authorization": self.tokens[user]},
				query_string=query,
			)
			self.assertEqual(response.status_code, 200, response.text)
			return [row["name"] for row in response.json["message"]]

		self.assertEqual(assignees(STRANGER, missing), [])
		self.assertEqual(assignees(STRANGER, hidden), [])
		self.assertEqual(assignees(MANAGER, hidden), [APPROVER])
		self.assertEqual(assignees(MANAGER, f"%{hidden[4:]}", "like"), [APPROVER])
		# Checked as Frappe's list checks its filters: a text condition is no SQL of its own.
		query = {"doctype": "Approval Request", "current_filters": '["1=1"]', "field": "assigned_to"}
		response = request(
			"get",
			"/api/method/frappe.desk.listview.get_group_by_count",
			headers={"Authorization": self.tokens[STRANGER]},
			query_string=query,
		)
		self.assertGreaterEqual(response.status_code, 400, response.text)

	def test_a_role_every_user_holds_lets_no_website_user_decide(self):
		# Frappe gives every logged-in user the All and Guest roles, website users (customers,
		# suppliers) too: an agent naming one must not let a portal user decide its request.
		if not frappe.db.exists("User", WEBSITE_USER):
			frappe.get_doc(
				{
					"doctype": "User",
					"email": WEBSITE_USER,
					"first_name": "Portal",
					"user_type": "Website User",
					"send_welcome_email": 0,
				}
			).insert(ignore_permissions=True)
		token = api_token(WEBSITE_USER)
		for role in ("All", "Guest"):
			with self.subTest(role=role):
				name = receive(approval_requested(users=(), roles=(role,)))
				response = request(
					"post", METHOD + "approve", headers={"Authorization": token}, json={"name": name}
				)
				self.assertEqual(response.status_code, 403, response.text)
				self.assertEqual(frappe.db.get_value("Approval Request", name, "status"), "Pending")
				self.assertEqual(self.call(MANAGER, "approve", name).status_code, 200)
