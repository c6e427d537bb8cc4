"""Approval Request: an agent's request for a human decision (human in the loop).

Created from ``agent.approval.requested`` by ``approvals.requests``; decided through the
Approve and Reject buttons or ``api.approvals`` (``approvals.decisions``); expired by the
scheduler (``approvals.expiry``). Every field is read-only: the decision fields change only
through those paths, and each change is versioned (track changes) and commented.
"""

from __future__ import annotations

import json

import frappe
from frappe import _
from frappe.model.document import Document

from cauldron_fabric.approvals.decisions import OPEN
from cauldron_fabric.approvals.notify import can_decide


class ApprovalRequest(Document):
	def validate(self) -> None:
		try:
			json.loads(self.payload or "{}")
		except ValueError:
			frappe.throw(_("The action parameters must be JSON."))
		if not self.due_by:
			frappe.throw(_("An approval request needs a due time."))

	def onload(self) -> None:
		self.set_onload("can_decide", self.status in OPEN and can_decide(self, frappe.session.user))
