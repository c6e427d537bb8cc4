"""Who sees an approval request, over real HTTP requests: names never tell who may not see them."""

from __future__ import annotations

import json

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.tests.test_approval_support import MANAGER, approval_requested, ensure_people
from cauldron_fabric.tests.test_approvals import receive
from cauldron_fabric.tests.test_http import api_token, make_user, request

METHOD = "/api/method/cauldron_fabric.api.approvals."
SHARED_READER = "shared.reader@fabric.test"
STRANGER = "approval.stranger@fabric.test"


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
		cls.tokens = {user: api_token(make_user(user, ["Blogger"])) for user in (SHARED_READER, STRANGER)}
		cls.tokens[MANAGER] = api_token(MANAGER)

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()

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
