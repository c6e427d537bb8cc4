"""Approval Request Approver: one role or user who may decide an approval request."""

from __future__ import annotations

from frappe.model.document import Document


class ApprovalRequestApprover(Document):
	pass
