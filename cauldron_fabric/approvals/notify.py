"""Who may decide an approval request, and telling them through Frappe's assignments.

An assignment puts a ToDo in each approver's list, shares the request with approvers who have
no read permission on it, and sends the assignment notification (bell, and email where the
user's notification settings say so).
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.desk.form import assign_to
from frappe.permissions import ALL_USER_ROLE, GUEST_ROLE
from frappe.utils import getdate

from cauldron_fabric.core.markup import plain

DOCTYPE = "Approval Request"
MANAGERS = ("System Manager", "Fabric Manager")
# Frappe gives these to every logged-in user, website users (customers, suppliers) too: named as
# approver, one would let anyone decide. They let nobody decide; the managers decide instead.
EVERY_USER_ROLES = frozenset({ALL_USER_ROLE, GUEST_ROLE})
# A role held by hundreds of users should not flood them all; the first ones are assigned.
MAX_NOTIFIED = 50
URGENT = ("high", "critical")


def add_note(doc, text: str) -> None:
	"""Adds an Info comment to the request's timeline, its text kept with look-alike brackets.

	Desk's timeline renders Info comments as HTML, and the notes quote what came from outside
	(an approver's decision comment, the names an agent's event gave as approvers): Frappe's
	sanitizing leaves links and images in, which would show as the site's own note.
	"""
	doc.add_comment("Info", plain(text))


def listed(doc, approver_type: str) -> set[str]:
	"""Returns the users or roles listed as approvers."""
	return {row.approver for row in doc.approvers or [] if row.approver_type == approver_type}


def deciding_roles(doc) -> set[str]:
	"""Returns the roles listed as approvers whose holders may decide (not those every user holds)."""
	return listed(doc, "Role") - EVERY_USER_ROLES


def can_decide(doc, user: str) -> bool:
	"""Tells whether ``user`` is a designated approver of ``doc`` or a manager, and not its requester."""
	if doc.get("requested_by") and doc.requested_by == user:
		return False  # four eyes: whoever asked for the approval cannot give it
	roles = set(frappe.get_roles(user))
	if user == "Administrator" or roles & set(MANAGERS):
		return True
	return user in listed(doc, "User") or bool(roles & deciding_roles(doc))


def users_with_roles(roles: set[str]) -> list[str]:
	"""Returns the enabled desk users holding any of ``roles`` (Administrator aside)."""
	if not roles:
		return []
	holders = frappe.get_all(
		"Has Role",
		filters={"role": ("in", sorted(roles)), "parenttype": "User"},
		pluck="parent",
		distinct=True,
	)
	return frappe.get_all(
		"User",
		filters={"name": ("in", holders or [""]), "enabled": 1, "user_type": "System User"},
		pluck="name",
		order_by="name asc",
	)


def approver_users(doc) -> list[str]:
	"""Returns the users to notify: the listed ones, then the holders of listed roles.

	Disabled users are left out as role holders are: they cannot log in to decide.
	"""
	named = sorted(listed(doc, "User") - {"Guest"})
	enabled = set(frappe.get_all("User", filters={"name": ("in", named or [""]), "enabled": 1}, pluck="name"))
	users = [u for u in named if u in enabled]
	for user in users_with_roles(deciding_roles(doc)):
		if user not in users and user != "Administrator":
			users.append(user)
	return users[:MAX_NOTIFIED]


def notify_approvers(doc, users: list[str] | None = None) -> list[str]:
	"""Assigns the request to its approvers (or to ``users``); returns who was assigned."""
	users = approver_users(doc) if users is None else users
	# Four eyes: the requester may be listed (by name or role) but never decides (can_decide),
	# so a ToDo asking it to would only be a dead end.
	users = [user for user in users if user != doc.get("requested_by")]
	if frappe.get_system_settings("disable_document_sharing"):
		# assign_to shares the request with an assignee who cannot read it, and refuses (failing
		# the whole event) when sharing is off: assign only the readers and name the others.
		readers = [user for user in users if frappe.has_permission(doc=doc, ptype="read", user=user)]
		if left_out := [user for user in users if user not in readers]:
			add_note(
				doc,
				_(
					"Document sharing is off, so these approvers cannot open it and were not assigned: {0}"
				).format(", ".join(left_out)),
			)
		users = readers
	if not users:
		return []
	assign_to.add(
		{
			"assign_to": users,
			"doctype": DOCTYPE,
			"name": doc.name,
			"description": _("Approve or reject: {0}").format(doc.action_summary),
			"date": getdate(doc.due_by) if doc.due_by else None,
			"priority": "High" if doc.risk in URGENT else "Medium",
		},
		ignore_permissions=True,
	)
	return users


def manager_users() -> list[str]:
	"""Returns who decides a request none of whose approvers can: Fabric Managers, else System Managers."""
	for role in ("Fabric Manager", "System Manager"):
		if users := [u for u in users_with_roles({role}) if u != "Administrator"]:
			return users[:MAX_NOTIFIED]
	return []


def close_assignments(doc) -> None:
	"""Closes the approvers' ToDos once the request is decided or expired."""
	assign_to.close_all_assignments(DOCTYPE, doc.name, ignore_permissions=True)
