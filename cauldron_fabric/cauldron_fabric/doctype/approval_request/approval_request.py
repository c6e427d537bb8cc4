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
from cauldron_fabric.services.guards import changed_fields

# Set on the document by the app's own paths (the handler that creates requests, decisions and
# expiry); a save without it comes from a generic endpoint (REST PUT/POST, set_value, savedocs).
APP_PATH_FLAG = "fabric_approval_path"


class ApprovalRequest(Document):
	def validate(self) -> None:
		self.refuse_generic_changes()
		try:
			json.loads(self.payload or "{}")
		except ValueError:
			frappe.throw(_("The action parameters must be JSON."))
		if not self.due_by:
			frappe.throw(_("An approval request needs a due time."))

	def refuse_generic_changes(self) -> None:
		"""Every field is read-only: requests are created from events and decided by approve/reject.

		Frappe's read_only is a form hint only; without this, anyone with write permission could
		set status=Approved over /api/resource or frappe.client.set_value, skipping can_decide
		(four eyes) and the approval.response the agent waits for.
		"""
		if self.flags.get(APP_PATH_FLAG):
			return
		if self.is_new():
			frappe.throw(
				_("Approval requests are created from agent.approval.requested events, not by hand."),
				frappe.PermissionError,
			)
		ignored = {"modified", "modified_by", "_user_tags", "_comments", "_assign", "_liked_by", "_seen"}
		layout = ("Section Break", "Column Break", "Tab Break", "HTML")
		changed = changed_fields(
			self,
			(
				df.fieldname
				for df in self.meta.get("fields")
				if df.fieldname not in ignored and df.fieldtype not in layout
			),
		)
		if changed:
			frappe.throw(
				_("Approval requests change only through Approve and Reject ({0} cannot be edited).").format(
					", ".join(changed)
				),
				frappe.PermissionError,
			)

	def onload(self) -> None:
		self.set_onload("can_decide", self.status in OPEN and can_decide(self, frappe.session.user))


def on_doctype_update() -> None:
	"""Adds the index the expiry job reads through every two minutes (pending, earliest due first):
	without it each run scanned and sorted the whole table (about 300 ms at 100,000 requests)."""
	frappe.db.add_index("Approval Request", ["status", "due_by"], index_name="fabric_pending_due")
