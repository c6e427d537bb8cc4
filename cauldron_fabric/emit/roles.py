"""``system.change`` for a user's roles, which are saved as Has Role rows of the User.

Roles are permissions, but the rows that give them belong to the User form: a save that gives
or takes one is a ``user.updated`` like any other, and Has Role, a child table, has no events
of its own. So every User save compares the roles before and after and, when they differ,
records one more event in the same transaction: a ``system.change`` naming the user and the
roles added and removed. A Role Profile's change reaches its users through their saves, so it
is covered too. Disabling a Role takes it from every user with one plain delete, no User
save: the Role's own hooks note who had it before and record each of those users' change.
"""

from __future__ import annotations

from typing import Any

import frappe

from cauldron_fabric.core.naming import SYSTEM_CHANGE
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.recorder import new_envelope, record

USER = "User"


def user_roles_changed(doc, method=None) -> None:
	"""Records a ``system.change`` when the User save that just ran gave or took roles."""
	if not _emits_role_changes():
		return
	before = doc.get_doc_before_save()
	old = _roles(before) if before is not None else []
	_record_roles_change(doc.name, old, _roles(doc), "created" if before is None else "updated")


def note_role_holders(doc, method=None) -> None:
	"""Notes which users hold a Role being saved disabled, before its validate deletes their rows."""
	if doc.disabled and not doc.is_new() and _emits_role_changes():
		doc.flags.fabric_role_holders = frappe.get_all(
			"Has Role", filters={"role": doc.name, "parenttype": USER}, pluck="parent", distinct=True
		)


def role_taken_from_holders(doc, method=None) -> None:
	"""Records the ``system.change`` of every user the disabled Role was just taken from."""
	for user in doc.flags.pop("fabric_role_holders", None) or ():
		new = sorted(
			set(frappe.get_all("Has Role", filters={"parent": user, "parenttype": USER}, pluck="role"))
		)
		_record_roles_change(user, sorted({*new, doc.name}), new, "updated")


def _record_roles_change(user: str, old: list[str], new: list[str], action: str) -> None:
	if old == new:
		return
	payload: dict[str, Any] = {
		"doctype": USER,
		"name": user,
		"action": action,
		"changes": {"roles": {"old": old, "new": new}},
		"rolesAdded": sorted(set(new) - set(old)),
		"rolesRemoved": sorted(set(old) - set(new)),
	}
	record([new_envelope(SYSTEM_CHANGE, USER, user, action, payload)])


def _emits_role_changes() -> bool:
	"""Tells whether system changes about users are recorded (as for any system DocType)."""
	policy = current_policy()
	return policy.enabled and policy.system_events and USER not in policy.denied


def _roles(doc) -> list[str]:
	"""Returns the roles a User document gives, sorted, each once."""
	return sorted({row.role for row in doc.get("roles") or [] if row.role})
