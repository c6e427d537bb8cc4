"""Approval Requests in a browser: Approve and Reject ask for a comment and tell the agent."""

from __future__ import annotations

import frappe

from cauldron_fabric.tests.browser.desk import USER, DeskCase
from cauldron_fabric.tests.browser.site_state import delete_approval_requests
from cauldron_fabric.tests.test_approval_support import approval_requested, receive, responses


def stored(name: str) -> dict:
	"""Returns a request's decision as committed."""
	return frappe.db.get_value(
		"Approval Request", name, ["status", "decided_by", "decision_comment"], as_dict=True
	)


class TestApprovalRequestForm(DeskCase):
	def new_request(self) -> str:
		"""Receives an agent's request naming the tests' desk user as its approver (committed)."""
		name = receive(approval_requested(users=(USER,), roles=()))
		self.addCleanup(frappe.db.commit)
		self.addCleanup(delete_approval_requests, [name])
		self.addCleanup(self.committed)
		return name

	def decide(self, name: str, button: str, comment: str) -> None:
		"""Presses Approve or Reject, writes the comment and confirms."""
		self.desk.open_form("Approval Request", name)
		self.desk.click_button(button)
		self.desk.fill_dialog("comment", comment)
		self.desk.confirm_dialog()
		self.desk.alert(f"{button}: the agent is told")

	def assert_decided(self, name: str, status: str, comment: str) -> None:
		"""Checks the form shows ``status`` without its buttons, and the decision and the agent's
		answer as committed."""
		self.desk.wait_field_text("status", status)
		self.desk.wait_without_button("Approve")
		self.desk.wait_without_button("Reject")
		self.committed()
		self.assertEqual(stored(name), {"status": status, "decided_by": USER, "decision_comment": comment})
		self.assert_response(name, status.lower(), comment)

	def assert_response(self, name: str, decision: str, comment: str) -> None:
		"""Checks the one approval.response the decision recorded for the agent."""
		(response,) = responses(name)
		payload = response["data"]["payload"]
		self.assertEqual(
			(payload["requestId"], payload["decision"], payload["comment"], payload["decidedBy"]),
			(name, decision, comment, USER),
		)
		correlation = frappe.db.get_value("Approval Request", name, "correlation_id")
		self.assertEqual(response["metadata"]["correlationId"], correlation)

	def test_approve_records_the_decision_and_answers_the_agent(self):
		name = self.new_request()
		self.decide(name, "Approve", "Within this quarter's budget")
		self.assert_decided(name, "Approved", "Within this quarter's budget")

	def test_reject_needs_a_comment_then_records_it_and_answers_the_agent(self):
		name = self.new_request()
		self.desk.open_form("Approval Request", name)
		self.desk.click_button("Reject")
		self.desk.confirm_dialog()
		title, text = self.desk.message()
		self.assertEqual(title, "Missing Values Required")
		self.assertIn("Comment for the agent", text)
		self.desk.close_message()
		self.committed()
		self.assertEqual(stored(name)["status"], "Pending")
		self.assertEqual(responses(name), [])

		self.desk.fill_dialog("comment", "Supplier is not approved")
		self.desk.confirm_dialog()
		self.desk.alert("Reject: the agent is told")
		self.assert_decided(name, "Rejected", "Supplier is not approved")
