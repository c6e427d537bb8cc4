"""``system.change`` for a user's roles, which are saved as Has Role rows of the User.

Roles are permissions, but the rows that give them belong to the User form: a save that gives
or takes one is a ``user.updated`` like any other, and Has Role, a child table, has no events
of its own. So every User save compares the roles before and after and, when they differ,
records one more event in the same transaction: a ``system.change`` naming the user and the
roles added and removed. A Role Profile's change reaches its users through their saves, so it
is covered too.
"""

from __future__ import annotations

from typing import Any

from cauldron_fabric.core.naming import SYSTEM_CHANGE
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.recorder import new_envelope, record

USER = "User"


def user_roles_changed(doc, method=None) -> None:
	"""Records a ``system.change`` when the User save that just ran gave or took roles."""
	if not _emits_role_changes():
		return
	before = doc.get_doc_before_save()
	old, new = _roles(before) if before is not None else [], _roles(doc)
	if old == new:
		return
	action = "created" if before is None else "updated"
	payload: dict[str, Any] = {
		"doctype": USER,
		"name": doc.name,
		"action": action,
		"changes": {"roles": {"old": old, "new": new}},
		"rolesAdded": sorted(set(new) - set(old)),
		"rolesRemoved": sorted(set(old) - set(new)),
	}
	record([new_envelope(SYSTEM_CHANGE, USER, doc.name, action, payload)])


def _emits_role_changes() -> bool:
	"""Tells whether system changes about users are recorded (as for any system DocType)."""
	policy = current_policy()
	return policy.enabled and policy.system_events and USER not in policy.denied


def _roles(doc) -> list[str]:
	"""Returns the roles a User document gives, sorted, each once."""
	return sorted({row.role for row in doc.get("roles") or [] if row.role})
