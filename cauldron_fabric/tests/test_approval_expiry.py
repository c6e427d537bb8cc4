"""Overdue approval requests on a real site: rejected, or escalated to a role, and the agent told."""

from __future__ import annotations

import frappe

from cauldron_fabric.api import approvals as approvals_api
from cauldron_fabric.approvals.expiry import expire_overdue_requests
from cauldron_fabric.tests.test_approval_support import (
	APPROVER,
	ESCALATION_HOLDER,
	ESCALATION_ROLE,
	NOBODYS_ROLE,
	PAST,
	ApprovalCase,
	approval_requested,
	assignments,
	ensure_role,
	receive,
	responses,
)
from cauldron_fabric.tests.utils import fabric_settings


class TestApprovalExpiry(ApprovalCase):
	def test_expiry_rejects_overdue_requests_and_tells_the_agent(self):
		event = approval_requested(due_in=PAST)
		name = receive(event)
		with fabric_settings(approval_expiry_action="Reject"):
			self.assertGreaterEqual(expire_overdue_requests(), 1)
		doc = frappe.get_doc("Approval Request", name)
		self.assertEqual(doc.status, "Expired")
		(response,) = responses(name)
		self.assertEqual(response["data"]["payload"]["decision"], "rejected")
		self.assertIn("rejected automatically", response["data"]["payload"]["comment"])
		self.assertEqual(response["metadata"]["correlationId"], event.metadata.correlation_id)
		self.assertEqual(set(assignments(name).values()), {"Closed"})
		frappe.set_user(APPROVER)
		with self.assertRaisesRegex(frappe.ValidationError, "already Expired"):
			approvals_api.approve(name)

	def test_expiry_escalates_to_the_escalation_role_when_the_admin_chose_so(self):
		name = receive(approval_requested(due_in=PAST))
		with fabric_settings(approval_expiry_action="Escalate", approval_escalation_role=ESCALATION_ROLE):
			expire_overdue_requests()
		doc = frappe.get_doc("Approval Request", name)
		self.assertEqual((doc.status, doc.escalated_to), ("Escalated", ESCALATION_ROLE))
		self.assertIn(("Role", ESCALATION_ROLE), [(r.approver_type, r.approver) for r in doc.approvers])
		self.assertEqual(assignments(name).get(ESCALATION_HOLDER), "Open")
		self.assertEqual(responses(name), [], "an escalation is no answer yet")
		frappe.set_user(ESCALATION_HOLDER)
		self.assertEqual(approvals_api.approve(name, "Escalated and approved.")["status"], "Approved")
		frappe.db.commit()
		self.assertEqual([r["data"]["payload"]["decidedBy"] for r in responses(name)], [ESCALATION_HOLDER])

	def test_escalation_without_a_role_rejects_and_says_why(self):
		name = receive(approval_requested(due_in=PAST))
		with fabric_settings(approval_expiry_action="Escalate", approval_escalation_role=None):
			expire_overdue_requests()
		self.assertEqual(frappe.db.get_value("Approval Request", name, "status"), "Expired")
		self.assertIn("name no escalation role", responses(name)[0]["data"]["payload"]["comment"])

	def test_the_expiry_job_is_scheduled(self):
		jobs = frappe.get_hooks("scheduler_events")["cron"]["*/2 * * * *"]
		self.assertIn("cauldron_fabric.approvals.expiry.expire_overdue_requests", jobs)
		self.assertTrue(
			frappe.db.exists(
				"Scheduled Job Type", {"method": "cauldron_fabric.approvals.expiry.expire_overdue_requests"}
			)
		)

	def test_escalation_to_a_role_nobody_holds_rejects_and_says_why(self):
		# An escalated request waits for the role's holders and never expires again: with none,
		# it would wait for ever and the agent never hear back.
		ensure_role(NOBODYS_ROLE)
		frappe.db.commit()
		name = receive(approval_requested(due_in=PAST))
		with fabric_settings(approval_expiry_action="Escalate", approval_escalation_role=NOBODYS_ROLE):
			expire_overdue_requests()
		self.assertEqual(frappe.db.get_value("Approval Request", name, "status"), "Expired")
		(response,) = responses(name)
		self.assertEqual(response["data"]["payload"]["decision"], "rejected")
		self.assertIn(f"nobody holds {NOBODYS_ROLE}", response["data"]["payload"]["comment"])
