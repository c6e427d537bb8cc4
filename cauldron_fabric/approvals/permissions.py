"""Who may see an approval request: whoever may decide it, whoever reads it (a role, a share).

A role listed as approver lets its holders decide, but role permissions cannot say "the
requests naming one of your roles". So every desk user (Desk User) reads Approval Request, and
the ``has_permission`` and ``permission_query_conditions`` hooks narrow that to the requests the
user may decide, plus those shared with it. The other roles that read (Fabric and System
Managers, or any a site adds) read every request.

Request ids are the agents' own ("drop-prod-db-42"): anyone who may not see a request gets the
same answer for it as for a name no request has, or the answers would tell which ids exist.
Only those who read every request are told that a name is missing. Frappe's own
/api/resource/Approval Request/<name> cannot be overridden by an app and still tells them apart.
"""

from __future__ import annotations

import frappe
from frappe import _, client, handler
from frappe.desk.form import load
from frappe.permissions import SYSTEM_USER_ROLE
from frappe.utils import cint

from cauldron_fabric.api.params import json_param, required
from cauldron_fabric.approvals.notify import DOCTYPE, EVERY_USER_ROLES, can_decide

APPROVER_TABLE = "Approval Request Approver"


def reads_every_request(user: str | None = None) -> bool:
	"""Tells whether ``user``'s roles let it read every request (Fabric and System Managers by default)."""
	user = user or frappe.session.user
	if user == "Administrator":
		return True
	roles = set(frappe.get_roles(user)) - {SYSTEM_USER_ROLE}  # its read is narrowed below
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


@frappe.whitelist()
def validate_link(doctype: str | None = None, docname: str | None = None, fields=None):
	"""Frappe's frappe.client.validate_link, which answers a request the caller may not see as a missing one.

	Desk's link check needs only read on the DocType, which every desk user has here, and says
	whether the name exists: it would tell anyone which request ids exist.
	"""
	if doctype == DOCTYPE and _hidden(docname):
		client.validate_link(doctype, docname)  # its own checks and refusals, unchanged
		return frappe._dict(name=None)
	return client.validate_link(doctype, docname, fields)


@frappe.whitelist()
def getdoc(doctype: str | None = None, name: str | None = None, user=None):
	"""Frappe's getdoc (Desk's form), which opens a request the caller may not see as a missing one.

	Frappe answers a missing name with nothing and a hidden one with 403: the difference told
	any desk user which request ids exist.
	"""
	# Frappe raised a bare Exception for a missing one: HTTP 500.
	required(doctype, "doctype")
	required(name, "name")
	if doctype == DOCTYPE and _hidden(name):
		return []  # what load.getdoc answers for a missing name
	return load.getdoc(doctype, name, user)


@frappe.whitelist()
def get(doctype: str | None = None, name: str | None = None, filters=None, parent=None):
	"""Frappe's frappe.client.get, which answers a request the caller may not see as a missing one (404)."""
	required(doctype, "doctype")
	filters = json_param(filters, "filters")  # malformed JSON failed in Frappe's parse: HTTP 500
	if doctype == DOCTYPE and not name and filters:
		# By filters, Frappe loads whichever request matches: the same question, asked another way.
		wanted = filters
		if _hidden(frappe.db.get_value(DOCTYPE, wanted, "name")):
			_not_found(wanted)
	elif doctype == DOCTYPE and _hidden(name):
		_not_found(name)
	return client.get(doctype, name, filters, parent)


@frappe.whitelist()
def get_docinfo(doc=None, doctype: str | None = None, name: str | None = None):
	"""Frappe's get_docinfo (a form's timeline), which answers a request the caller may not see as a missing one."""
	if not doc:
		required(doctype, "doctype")
		required(name, "name")
	if doctype == DOCTYPE and _hidden(name):
		_not_found(name)
	return load.get_docinfo(doc, doctype, name)


@frappe.whitelist()
def run_doc_method(method=None, docs=None, dt=None, dn=None, arg=None, args=None):
	"""Frappe's run_doc_method (a form's buttons), which answers a request the caller may not see as a missing one.

	Frappe loads the document before it checks read permission: 404 for a missing name, 403
	(or a timestamp mismatch) for a hidden one.
	"""
	required(method, "method")
	given = json_param(docs, "docs") if docs and not dt else {"doctype": dt, "name": dn}
	if isinstance(given, dict) and given.get("doctype") == DOCTYPE and _hidden(given.get("name")):
		_not_found(given.get("name"))
	return handler.run_doc_method(method, docs, dt, dn, arg, args)


def _not_found(name) -> None:
	"""Raises what Frappe raises for a request that does not exist (Document.load_from_db)."""
	frappe.throw(_("{0} {1} not found").format(_(DOCTYPE), name), frappe.DoesNotExistError)


def _hidden(name) -> bool:
	"""Tells whether a request named ``name`` exists and the caller may not see it."""
	if not isinstance(name, str) or reads_every_request() or not frappe.db.exists(DOCTYPE, name):
		return False
	return not may_see(frappe.get_doc(DOCTYPE, name))


def has_request_permission(doc, ptype: str | None = None, user: str | None = None, debug: bool = False):
	"""Narrows a desk user's read to the requests it may decide (the ``has_permission`` hook).

	Returns None (no say) to readers of every request and for other permission types; Frappe
	still grants a request shared with the user after this refuses it.
	"""
	user = user or frappe.session.user
	if ptype != "read" or reads_every_request(user):
		return None
	return can_decide(doc, user)


def query_conditions(user: str | None = None, doctype: str | None = None) -> str:
	"""Lists a desk user the requests it may decide or has been shared (``permission_query_conditions``).

	The shares are part of the condition: Frappe adds shared documents to a list only when role
	permissions do not already let the user read the DocType.
	"""
	user = user or frappe.session.user
	if reads_every_request(user):
		return ""
	request, who = f"`tab{DOCTYPE}`", frappe.db.escape(user)
	# can_decide's roles: not those every user holds (an empty list is no SQL, hence the '').
	roles = (
		", ".join(frappe.db.escape(role) for role in frappe.get_roles(user) if role not in EVERY_USER_ROLES)
		or "''"
	)
	approver = (
		f"select 1 from `tab{APPROVER_TABLE}` a where a.parent = {request}.name "
		f"and a.parenttype = {frappe.db.escape(DOCTYPE)} and ((a.approver_type = 'User' and "
		f"a.approver = {who}) or (a.approver_type = 'Role' and a.approver in ({roles})))"
	)
	shared = (
		f"select s.share_name from `tabDocShare` s where s.share_doctype = {frappe.db.escape(DOCTYPE)} "
		f"and s.`read` = 1 and (s.user = {who} or s.everyone = 1)"
	)
	# can_decide's four eyes: the requester never decides its own request.
	return (
		f"((ifnull({request}.requested_by, '') != {who} and exists ({approver})) "
		f"or {request}.name in ({shared}))"
	)


def approver_query_conditions(user: str | None = None, doctype: str | None = None) -> str:
	"""Lists a desk user the approver rows of the requests it may see (``permission_query_conditions``).

	Frappe lets whoever reads the parent DocType list a child table, and checks no parent's own
	conditions: every desk user reads Approval Request, so any of them could list every request's
	id (the rows' parent) and who decides it.
	"""
	visible = query_conditions(user)
	if not visible:
		return ""
	request = f"`tab{DOCTYPE}`"
	return f"`tab{APPROVER_TABLE}`.parent in (select {request}.name from {request} where {visible})"
