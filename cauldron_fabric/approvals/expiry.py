"""Expiry of approval requests nobody decided in time: rejected, or escalated, as the admin chose.

Fabric Settings ``approval_expiry_action``: ``Reject`` answers the agent with a rejection and
marks the request Expired; ``Escalate`` adds ``approval_escalation_role`` to the approvers and
assigns its holders (an escalated request waits for them; it does not expire again). Escalating
without a role set, or to a role nobody but the requester holds, rejects, and the request's
timeline says why.
"""

from __future__ import annotations

import time

import frappe
from frappe import _
from frappe.utils import format_datetime, now_datetime

from cauldron_fabric.approvals.decisions import REJECTED, is_overdue, publish_response
from cauldron_fabric.approvals.notify import (
	DOCTYPE,
	add_note,
	close_assignments,
	notify_approvers,
	users_with_roles,
)

BATCH = 200  # requests read at a time
RUN_SECONDS = 90  # under the job's two-minute period
FAILED_KEY = "fabric:approval-expiry-failed:"  # Redis: a request whose failure was logged lately
FAILED_LOG_SECONDS = 24 * 3600
SYSTEM_USER = "Administrator"  # who the agent is told decided an expired request


def expire_overdue_requests() -> int:
	"""Expires every pending request past its due time, one commit each (scheduler job); returns how many.

	Reads them a page at a time, the earliest due first, each page from where the last one
	ended: a request that cannot expire (its error logged) stays Pending at the head, and when
	each run read only the first page, ``BATCH`` such requests kept every later one from expiring
	for good. A run stops after ``RUN_SECONDS``; the next one, two minutes later, goes on.
	"""
	now, after, expired = now_datetime(), None, 0
	deadline = time.monotonic() + RUN_SECONDS
	while True:
		page = overdue_page(now, after)
		for name, _due_by in page:
			if time.monotonic() > deadline:
				return expired
			expired += expire_one(name)
		if len(page) < BATCH:
			return expired
		after = page[-1]


def overdue_page(now, after: tuple | None) -> list[tuple]:
	"""Returns the next ``BATCH`` pending requests due by ``now`` (name, due time), after ``after``."""
	past = "AND (due_by > %s OR (due_by = %s AND name > %s))" if after else ""
	return frappe.db.sql(
		f"""SELECT name, due_by FROM `tab{DOCTYPE}` WHERE status = 'Pending' AND due_by <= %s {past}
		ORDER BY due_by, name LIMIT %s""",
		(now, *((after[1], after[1], after[0]) if after else ()), BATCH),
	)


def expire_one(name: str) -> int:
	"""Expires one request if it is still overdue, and commits; 1 if it did, 0 if not or if it failed."""
	try:
		doc = frappe.get_doc(DOCTYPE, name, for_update=True)
		if not is_overdue(doc):
			frappe.db.commit()
			return 0
		expire_request(doc)
		frappe.db.commit()
		return 1
	except Exception:
		frappe.db.rollback()
		# Once a day per request: every run meets it again (720 errors a day otherwise).
		if frappe.cache.set(frappe.cache.make_key(f"{FAILED_KEY}{name}"), 1, nx=True, ex=FAILED_LOG_SECONDS):
			frappe.log_error(title=f"Approval request {name} could not expire")
		return 0


def expire_request(doc) -> None:
	"""Rejects or escalates one overdue request, per Fabric Settings (caller commits)."""
	action = frappe.db.get_single_value("Fabric Settings", "approval_expiry_action") or "Reject"
	role = frappe.db.get_single_value("Fabric Settings", "approval_escalation_role")
	holders = escalation_holders(doc, role) if action == "Escalate" and role else []
	if holders:
		escalate(doc, role, holders)
		return
	note = _("No decision by {0}: rejected automatically.").format(format_datetime(doc.due_by))
	if action == "Escalate" and role:
		# An escalated request never expires again: escalated to nobody, it would wait for ever.
		note += " " + _("Fabric Settings say to escalate to {0}, but nobody holds {0}.").format(role)
	elif action == "Escalate":
		note += " " + _("Fabric Settings say to escalate, but name no escalation role.")
	reject_on_expiry(doc, note)


def escalation_holders(doc, role: str) -> list[str]:
	"""Returns who an escalation to ``role`` reaches: its enabled holders but the requester (four eyes)."""
	return [u for u in users_with_roles({role}) if u not in ("Administrator", doc.get("requested_by"))]


def reject_on_expiry(doc, note: str) -> None:
	"""Marks the request Expired and answers the agent with a rejection."""
	doc.update({"status": "Expired", "decided_at": now_datetime(), "decision_comment": note})
	doc.response_event_id = publish_response(doc, REJECTED, note, SYSTEM_USER).id
	doc.flags.fabric_approval_path = True
	doc.save(ignore_permissions=True, ignore_version=False)
	add_note(doc, note)
	close_assignments(doc)


def escalate(doc, role: str, holders: list[str]) -> None:
	"""Adds ``role`` to the approvers, assigns its holders and marks the request Escalated."""
	if not any(row.approver_type == "Role" and row.approver == role for row in doc.approvers):
		doc.append("approvers", {"approver_type": "Role", "approver": role})
	doc.update({"status": "Escalated", "escalated_to": role})
	doc.flags.fabric_approval_path = True
	doc.save(ignore_permissions=True, ignore_version=False)
	note = _("No decision by {0}: escalated to {1}.").format(format_datetime(doc.due_by), role)
	add_note(doc, note)
	notify_approvers(doc, holders)
