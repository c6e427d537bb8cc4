"""Listing approval requests on a real site: those the caller may decide, paged, with times in UTC."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import frappe

from cauldron_fabric.api import approvals as approvals_api
from cauldron_fabric.core.envelope import parse_time
from cauldron_fabric.tests.test_approval_support import (
	APPROVER,
	APPROVER_ROLE,
	MANAGER,
	ApprovalCase,
	approval_requested,
	ensure_user,
	receive,
	responses,
)
from cauldron_fabric.tests.test_http_support import api_token, make_user, request

LIST = "/api/method/cauldron_fabric.api.approvals.list_requests"


class TestApprovalListing(ApprovalCase):
	def test_api_lists_the_requests_an_approver_may_decide(self):
		mine, others = receive(approval_requested()), receive(approval_requested(users=(MANAGER,), roles=()))
		frappe.set_user(APPROVER)
		names = [r["name"] for r in approvals_api.list_requests(mine=True, limit=200)["requests"]]
		self.assertIn(mine, names)
		self.assertNotIn(others, names)
		with self.assertRaises(frappe.ValidationError):
			approvals_api.list_requests(status="Maybe")

	def test_listing_takes_mine_0_as_no(self):
		# Query strings carry text: mine=0 must list every request, decided ones too.
		decided = receive(approval_requested())
		frappe.set_user(MANAGER)
		approvals_api.approve(decided)
		frappe.db.commit()
		frappe.set_user("Administrator")
		token = api_token(make_user("approvals-reader@example.com", ["Fabric Manager"]))
		response = request("get", LIST + "?mine=0&limit=200", headers={"Authorization": token})
		self.assertEqual(response.status_code, 200, response.text)
		self.assertIn(decided, [r["name"] for r in response.json["message"]["requests"]])

	def test_a_holder_of_an_approver_role_finds_the_requests_it_may_decide(self):
		# The role was given after the request was assigned (or the holder was past the first
		# MAX_NOTIFIED): no ToDo, no share, yet the holder may decide and must find the request.
		name = receive(approval_requested(users=(), roles=(APPROVER_ROLE,)))
		late = "late.holder." + frappe.generate_hash(length=6) + "@fabric.test"
		ensure_user(late, [APPROVER_ROLE])
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "User", late, force=True, ignore_permissions=True)
		frappe.set_user(late)
		self.assertEqual([r["name"] for r in approvals_api.list_requests(mine=1)["requests"]][:1], [name])
		self.assertTrue(approvals_api.get_request(name)["canDecide"])
		self.assertEqual(approvals_api.approve(name)["status"], "Approved")

	def test_mine_pages_over_the_requests_the_caller_may_decide(self):
		# The newest open request is the manager's own (four eyes): a page of one must still hold
		# the newest request the manager may decide, not come back empty.
		decidable = receive(approval_requested())
		own = approval_requested()
		own = replace(own, metadata=replace(own.metadata, user_id=MANAGER))
		receive(own)
		frappe.set_user(MANAGER)
		self.assertEqual(
			[r["name"] for r in approvals_api.list_requests(mine=1, limit=1)["requests"]], [decidable]
		)

	def test_the_api_gives_times_in_utc_as_the_events_do(self):
		# The agent sent dueBy in UTC and gets decidedAt in UTC on approval.response; the API
		# must not answer the site's wall-clock time without saying which zone it is in.
		event = approval_requested()
		name = receive(event)
		frappe.set_user(APPROVER)
		result = approvals_api.approve(name)
		frappe.db.commit()
		self.assertEqual(parse_time(result["dueBy"]), parse_time(event.data.payload["dueBy"]))
		(response,) = responses(name)
		decided = parse_time(response["data"]["payload"]["decidedAt"])
		self.assertLess(abs(parse_time(result["decidedAt"]) - decided), dt.timedelta(seconds=2))
