"""Upgrading a site from an earlier release, on a real site: rows shaped as that release left them."""

from __future__ import annotations

import frappe

from cauldron_fabric.api import approvals as approvals_api
from cauldron_fabric.patches import approval_texts_keep_markup_as_brackets as approval_texts_patch
from cauldron_fabric.tests.test_approval_support import (
	APPROVER,
	ApprovalCase,
	approval_requested,
	receive,
	responses,
)
from cauldron_fabric.tests.utils import listed_patches

# What an agent sent, as a release before its names were kept plain stored it.
AGENT_AS_SENT = "billing-agent <v2>"
TASK_AS_SENT = "Pay <b>invoice</b> if a > b"


class TestApprovalRequestsStoredBefore(ApprovalCase):
	def test_approval_response_gives_back_the_names_a_request_stored_before_the_upgrade_was_sent_with(self):
		name = receive(approval_requested(users=(APPROVER,), roles=()))
		# The earlier release had no *_as_sent columns (the migrate adds them empty) and kept
		# the agent's names as sent, markup included.
		frappe.db.sql(
			"""UPDATE `tabApproval Request` SET agent = %s, task = %s, agent_as_sent = NULL,
			task_as_sent = NULL WHERE name = %s""",
			(AGENT_AS_SENT, TASK_AS_SENT, name),
		)
		self.assertIn(approval_texts_patch.__name__, listed_patches())
		approval_texts_patch.execute()
		approval_texts_patch.execute()  # a second migrate changes nothing
		agent, task = frappe.db.get_value("Approval Request", name, ["agent", "task"])
		self.assertNotIn("<", agent + task, "the form shows look-alike brackets")
		frappe.set_user(APPROVER)
		approvals_api.approve(name)
		(response,) = responses(name)
		self.assertEqual(
			(response["data"]["payload"]["agent"], response["data"]["payload"]["task"]),
			(AGENT_AS_SENT, TASK_AS_SENT),
			"approval.response names the agent and task as the agent sent them",
		)
