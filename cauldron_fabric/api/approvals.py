"""Approval requests over the API: list, read, approve, reject.

``POST /api/method/cauldron_fabric.api.approvals.approve`` with ``name`` (the agent's request
id) and an optional ``comment``. Only the request's approvers (its users, holders of its roles)
and Fabric or System Managers may decide; the decision goes back to the agent as
``approval.response`` with the request's correlation id.
"""

from __future__ import annotations

from typing import Any

import frappe
from frappe import _

from cauldron_fabric.api.params import limit_param, required
from cauldron_fabric.approvals.decisions import APPROVED, OPEN, REJECTED, decide, load_for_decision, summary

MAX_LIMIT = 200
STATUSES = ("Pending", "Approved", "Rejected", "Expired", "Escalated")


@frappe.whitelist(methods=["POST"])
def approve(name: str | None = None, comment: str | None = None) -> dict[str, Any]:
	"""Approves an open request and sends ``approval.response`` (decision approved) to the agent."""
	load_for_decision(required(name, "name"))
	return summary(decide(name, APPROVED, comment))


@frappe.whitelist(methods=["POST"])
def reject(name: str | None = None, comment: str | None = None) -> dict[str, Any]:
	"""Rejects an open request and sends ``approval.response`` (decision rejected) to the agent."""
	load_for_decision(required(name, "name"))
	return summary(decide(name, REJECTED, comment))


@frappe.whitelist(methods=["GET"])
def get_request(name: str | None = None) -> dict[str, Any]:
	"""Returns one request, with whether the caller may decide it."""
	if not frappe.db.exists("Approval Request", required(name, "name")):
		# has_permission on a missing name raises DoesNotExistError (404) while an existing one
		# the caller cannot read is a 403: anyone could probe which request ids exist. Only
		# readers of Approval Request are told it is missing, as load_for_decision does.
		frappe.has_permission("Approval Request", "read", throw=True)
		frappe.throw(_("There is no approval request {0}.").format(name), frappe.DoesNotExistError)
	frappe.has_permission("Approval Request", "read", name, throw=True)
	return summary(frappe.get_doc("Approval Request", name))


@frappe.whitelist(methods=["GET"])
def list_requests(status: str | None = None, mine: bool = False, limit: int = 50) -> dict[str, Any]:
	"""Returns the requests the caller can see, newest first; ``mine`` keeps only open ones they may decide."""
	frappe.has_permission("Approval Request", "read", throw=True)
	# A query string carries text, and "0" is a true string: read it as the flag it is.
	mine = frappe.utils.sbool(mine)
	if status and status not in STATUSES:
		frappe.throw(_("status must be one of {0}.").format(", ".join(STATUSES)), frappe.ValidationError)
	limit = limit_param(limit, MAX_LIMIT)
	filters = {"status": status} if status else ({"status": ("in", OPEN)} if mine else {})
	names = frappe.get_list(
		"Approval Request", filters=filters, pluck="name", order_by="creation desc", limit=limit
	)
	requests = [summary(frappe.get_doc("Approval Request", n)) for n in names]
	if mine:
		requests = [r for r in requests if r["canDecide"]]
	return {"requests": requests}
