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
from frappe.query_builder import Order
from frappe.query_builder.functions import IfNull

from cauldron_fabric.api.params import limit_param, required, text_param
from cauldron_fabric.approvals.decisions import APPROVED, OPEN, REJECTED, decide, load_for_decision, summary
from cauldron_fabric.approvals.notify import DOCTYPE, EVERY_USER_ROLES, MANAGERS, can_decide
from cauldron_fabric.approvals.permissions import visible_request

MAX_LIMIT = 200
STATUSES = ("Pending", "Approved", "Rejected", "Expired", "Escalated")


@frappe.whitelist(methods=["POST"])
def approve(name: str | None = None, comment: str | None = None) -> dict[str, Any]:
	"""Approves an open request and sends ``approval.response`` (decision approved) to the agent."""
	load_for_decision(text_param(required(name, "name"), "name"))
	return summary(decide(name, APPROVED, text_param(comment, "comment")))


@frappe.whitelist(methods=["POST"])
def reject(name: str | None = None, comment: str | None = None) -> dict[str, Any]:
	"""Rejects an open request and sends ``approval.response`` (decision rejected) to the agent."""
	load_for_decision(text_param(required(name, "name"), "name"))
	return summary(decide(name, REJECTED, text_param(comment, "comment")))


@frappe.whitelist(methods=["GET"])
def get_request(name: str | None = None) -> dict[str, Any]:
	"""Returns one request, with whether the caller may decide it."""
	# A holder of a listed role may have no share of the request (the role came later, or it was
	# past the first MAX_NOTIFIED assignees): deciding it lets it read it.
	return summary(visible_request(text_param(required(name, "name"), "name")))


@frappe.whitelist(methods=["GET"])
def list_requests(status: str | None = None, mine: bool = False, limit: int = 50) -> dict[str, Any]:
	"""Returns the requests the caller can see, newest first; ``mine`` keeps only open ones they may decide."""
	# A query string carries text, and "0" is a true string: read it as the flag it is.
	mine = frappe.utils.sbool(mine)
	if status and status not in STATUSES:
		frappe.throw(_("status must be one of {0}.").format(", ".join(STATUSES)), frappe.ValidationError)
	limit = limit_param(limit, MAX_LIMIT)
	if mine:
		return {"requests": _decidable(status, limit)}
	frappe.has_permission("Approval Request", "read", throw=True)
	names = frappe.get_list(
		"Approval Request",
		filters={"status": status} if status else {},
		pluck="name",
		order_by="creation desc",
		limit=limit,
	)
	return {"requests": [summary(frappe.get_doc("Approval Request", n)) for n in names]}


def _decidable(status: str | None, limit: int) -> list[dict[str, Any]]:
	"""Returns up to ``limit`` open requests the caller may decide, newest first.

	Deciding is can_decide's call, not read permission's: a holder of a listed role may have no
	share of a request (see get_request). The open requests are read page by page until
	``limit`` are found, so requests the caller may not decide never leave a page short. Only
	the requests naming the caller or one of its roles are read (all but its own, for a
	manager): any user may ask, and reading every open request to find none would cost each
	call as much as the site has requests.
	"""
	statuses = [s for s in OPEN if not status or s == status]
	user, found, start = frappe.session.user, [], 0
	while statuses and len(found) < limit:
		names = _open_requests_for(user, statuses, start)
		for name in names:
			doc = frappe.get_doc("Approval Request", name)
			if can_decide(doc, user):
				found.append(summary(doc, user))
				if len(found) == limit:
					break
		if len(names) < MAX_LIMIT:
			break
		start += MAX_LIMIT
	return found


def _open_requests_for(user: str, statuses: list[str], start: int) -> list[str]:
	"""Returns a page of the open requests ``user`` may decide as can_decide decides, newest first."""
	request = frappe.qb.DocType(DOCTYPE)
	query = (
		frappe.qb.from_(request)
		.select(request.name)
		.where(request.status.isin(statuses))
		.where(IfNull(request.requested_by, "") != user)  # four eyes
		.orderby(request.creation, order=Order.desc)
		.orderby(request.name, order=Order.desc)
		.limit(MAX_LIMIT)
		.offset(start)
	)
	if user != "Administrator" and not set(MANAGERS) & set(frappe.get_roles(user)):
		approver = frappe.qb.DocType("Approval Request Approver")
		named = (approver.approver_type == "User") & (approver.approver == user)
		if roles := [r for r in frappe.get_roles(user) if r not in EVERY_USER_ROLES]:
			named |= (approver.approver_type == "Role") & approver.approver.isin(roles)
		naming = frappe.qb.from_(approver).select(approver.parent).where(approver.parenttype == DOCTYPE)
		query = query.where(request.name.isin(naming.where(named)))
	return query.run(pluck=True)
