"""``system.change`` for a user's roles, which are saved as Has Role rows of the User.

Roles are permissions, but the rows that give them belong to the User form: a save that gives
or takes one is a ``user.updated`` like any other, and Has Role, a child table, has no events
of its own. So every User save compares the roles before and after and, when they differ,
records one more event in the same transaction: a ``system.change`` naming the user and the
roles added and removed. A Role Profile's change reaches its users through their saves, so it
is covered too. Disabling a Role takes it from every user and every Role Profile with one
plain delete, no save: the Role's own hooks note who had it before and record each of those
users' and profiles' change the same way.
"""

from __future__ import annotations

from typing import Any

import frappe

from cauldron_fabric.core.naming import SYSTEM_CHANGE
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.recorder import new_envelope, record

USER = "User"
HOLDERS = (USER, "Role Profile")


def user_roles_changed(doc, method=None) -> None:
	"""Records a ``system.change`` when the User save that just ran gave or took roles."""
	if not _emits_role_changes():
		return
	before = doc.get_doc_before_save()
	old = _roles(before) if before is not None else []
	_record_roles_change(doc.name, old, _roles(doc), "created" if before is None else "updated")


def note_role_holders(doc, method=None) -> None:
	"""Notes which users and Role Profiles hold a Role being saved disabled, before its validate
	deletes their rows."""
	if doc.disabled and not doc.is_new():
		doc.flags.fabric_role_holders = {
			doctype: frappe.get_all(
				"Has Role", filters={"role": doc.name, "parenttype": doctype}, pluck="parent", distinct=True
			)
			for doctype in HOLDERS
			if _emits_role_changes(doctype)
		}


def role_taken_from_holders(doc, method=None) -> None:
	"""Records the ``system.change`` of every user and Role Profile the disabled Role was just taken from."""
	for doctype, holders in (doc.flags.pop("fabric_role_holders", None) or {}).items():
		for holder in holders:
			new = sorted(
				set(
					frappe.get_all(
						"Has Role", filters={"parent": holder, "parenttype": doctype}, pluck="role"
					)
				)
			)
			_record_roles_change(holder, sorted({*new, doc.name}), new, "updated", doctype)


def _record_roles_change(name: str, old: list[str], new: list[str], action: str, doctype: str = USER) -> None:
	if old == new:
		return
	payload: dict[str, Any] = {
		"doctype": doctype,
		"name": name,
		"action": action,
		"changes": {"roles": {"old": old, "new": new}},
		"rolesAdded": sorted(set(new) - set(old)),
		"rolesRemoved": sorted(set(old) - set(new)),
	}
	# Kept as Invalid rather than refusing the save when the latest system.change schema has no
	# rolesAdded (before the migrate registers this version's catalog, or where the subject's
	# compatibility mode refused it): the user saved a User or a Role, not this event.
	record([new_envelope(SYSTEM_CHANGE, doctype, name, action, payload)], reject_invalid=False)


def _emits_role_changes(doctype: str = USER) -> bool:
	"""Tells whether system changes about users (or Role Profiles) are recorded (as for any
	system DocType)."""
	policy = current_policy()
	return policy.enabled and policy.system_events and doctype not in policy.denied


def _roles(doc) -> list[str]:
	"""Returns the roles a User document gives, sorted, each once."""
	return sorted({row.role for row in doc.get("roles") or [] if row.role})
