"""Who may see an approval request: whoever may decide it, whoever reads it (a role, a share).

Request ids are the agents' own ("drop-prod-db-42"): anyone who may not see a request gets the
same answer for it as for a name no request has, or the answers would tell which ids exist.
Only those who read every request are told that a name is missing.
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.utils import cint

from cauldron_fabric.approvals.notify import DOCTYPE, can_decide


def reads_every_request(user: str | None = None) -> bool:
	"""Tells whether ``user``'s roles let it read every request (Fabric and System Managers by default)."""
	user = user or frappe.session.user
	if user == "Administrator":
		return True
	roles = set(frappe.get_roles(user))
	return any(
		perm.role in roles and perm.read and not perm.if_owner and not cint(perm.permlevel)
		for perm in frappe.get_meta(DOCTYPE).permissions
	)


def may_see(doc, user: str | None = None) -> bool:
	"""Tells whether ``user`` may see the request: it may decide it, or read it."""
	user = user or frappe.session.user
	return can_decide(doc, user) or frappe.has_permission(DOCTYPE, "read", doc, user=user)


def visible_request(name: str, for_update: bool = False):
	"""Returns the request; raises one PermissionError for a missing request and one the user may not see."""
	if frappe.db.exists(DOCTYPE, name):
		doc = frappe.get_doc(DOCTYPE, name, for_update=for_update)
		if may_see(doc):
			return doc
	elif reads_every_request():
		frappe.throw(_("There is no approval request {0}.").format(name), frappe.DoesNotExistError)
	frappe.throw(
		_("There is no approval request {0} that you may see.").format(name),
		frappe.PermissionError,
		title=_("Not permitted"),
	)
