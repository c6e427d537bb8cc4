"""``system.change`` for what the Role Permissions Manager changes without document hooks.

The page's Update, Remove and Reset write Custom DocPerm rows with plain queries
(``frappe.qb.update``, ``frappe.db.delete``), so no hook sees the most common way permissions
change in Desk. Its whitelisted methods are overridden (``override_whitelisted_methods``) with
these wrappers: each runs Frappe's own method and then records, in the same transaction, one
event per Custom DocPerm row it changed or removed, the same events a document save or delete
of that row would give. Update and Remove first copy the DocType's standard permissions into
Custom DocPerm when it has none; the wrappers make that copy themselves before looking, so
the copied rows are emitted as created by the usual hooks and the change that follows as an
update of them.

The User Permission list's Add / Update and Clear do the same to User Permission documents
(``frappe.db.delete``): their wrappers record a ``deleted`` event for each one they removed;
those they insert are documents saved as usual, with their own events.

The wrappers take POST only (Desk's frappe.call posts): Frappe's methods also take a GET, which
carries no CSRF token, so a link an admin followed from another site could change permissions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import frappe
from frappe import _
from frappe.core.doctype.user_permission import user_permission
from frappe.core.page.permission_manager import permission_manager
from frappe.permissions import rights, setup_custom_perms

from cauldron_fabric.api.params import json_param, number_param, required, text_param
from cauldron_fabric.emit.document_events import emit_document_event
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.watch import written_by_frappe

ROWS = "Custom DocPerm"
# The Custom DocPerm checks the Role Permissions Manager sets (Frappe's rights, and "only if creator").
PERMISSION_TYPES = (*rights, "if_owner")
USER_PERMISSION = "User Permission"


@frappe.whitelist(methods=["POST"])
def update(doctype=None, role=None, permlevel=None, ptype=None, value=None, if_owner=0):
	"""Frappe's permission_manager.update, plus the events of the rows it changed."""
	frappe.only_for("System Manager")
	_checked(doctype=doctype, role=role, permlevel=permlevel)
	if text_param(required(ptype, "ptype"), "ptype") not in PERMISSION_TYPES:
		# Frappe writes it as a column name: an unknown one was a database error (HTTP 500).
		frappe.throw(
			_("ptype must be one of {0}, not {1}.").format(", ".join(PERMISSION_TYPES), repr(ptype)),
			frappe.ValidationError,
		)
	copied = setup_custom_perms(doctype)
	out = _recorded(doctype, permission_manager.update, doctype, role, permlevel, ptype, value, if_owner)
	return "refresh" if copied else out  # what the page expects after a first copy


@frappe.whitelist(methods=["POST"])
def remove(doctype=None, role=None, permlevel=None, if_owner=0):
	"""Frappe's permission_manager.remove, plus the events of the rows it changed or removed."""
	frappe.only_for("System Manager")
	_checked(doctype=doctype, role=role, permlevel=permlevel)
	setup_custom_perms(doctype)
	return _recorded(doctype, permission_manager.remove, doctype, role, permlevel, if_owner)


@frappe.whitelist(methods=["POST"])
def reset(doctype=None):
	"""Frappe's permission_manager.reset, plus the events of the rows it removed."""
	frappe.only_for("System Manager")
	_checked(doctype=doctype)
	return _recorded(doctype, permission_manager.reset, doctype)


@frappe.whitelist(methods=["POST"])
def add_user_permissions(data=None):
	"""Frappe's user_permission.add_user_permissions, plus the events of the ones it deleted."""
	frappe.only_for("System Manager")
	given = json_param(required(data, "data"), "data")
	if not isinstance(given, dict):
		frappe.throw(
			_("data must be a JSON object of the user permission (user, doctype, docs…), not {0}.").format(
				type(given).__name__
			),
			frappe.ValidationError,
		)
	if not given.get("user") or not given.get("doctype"):
		return user_permission.add_user_permissions(data)
	of_user = {"user": given["user"], "allow": given["doctype"]}
	return _recorded_deletions(USER_PERMISSION, of_user, user_permission.add_user_permissions, data)


@frappe.whitelist(methods=["POST"])
def clear_user_permissions(user=None, for_doctype=None):
	"""Frappe's user_permission.clear_user_permissions, plus the events of the ones it deleted."""
	frappe.only_for("System Manager")
	_checked(user=user, for_doctype=for_doctype)
	of_user = {"user": user, "allow": for_doctype}
	return _recorded_deletions(
		USER_PERMISSION, of_user, user_permission.clear_user_permissions, user, for_doctype
	)


def _checked(**given: Any) -> None:
	"""Refuses a missing argument, or one that is no text (``permlevel``: no whole number), by name.

	Frappe's methods failed on them with a TypeError, or wrote an object into a query (a
	database error): HTTP 500 either way.
	"""
	for name, value in given.items():
		required(value, name)
		if name == "permlevel":
			number_param(value, name)
		else:
			text_param(value, name)


def _recorded(doctype: str, method: Callable, *args: Any) -> Any:
	frappe.only_for("System Manager")  # as the wrapped methods do, before anything is read
	if not isinstance(doctype, str):
		return method(*args)
	return _recorded_deletions(ROWS, {"parent": doctype}, method, *args)


def _recorded_deletions(doctype: str, filters: dict[str, Any], method: Callable, *args: Any) -> Any:
	"""Runs ``method``, then records an event for each ``doctype`` document matching ``filters``
	that it deleted or changed with plain queries (inserts have their hooks)."""
	if current_policy().kind_of(doctype) is None:
		return method(*args)
	before = _documents(doctype, filters)
	result = written_by_frappe(method, *args)  # its plain queries are told here, not as sql
	after = _documents(doctype, filters)
	for name, old in before.items():
		new = after.get(name)
		if new is None:
			emit_document_event(old, "deleted")
		elif _values(new) != _values(old):
			emit_document_event(new, "updated", before=old)
	return result


def _documents(doctype: str, filters: dict[str, Any]) -> dict[str, Any]:
	"""Returns the documents matching ``filters``, by name."""
	names = frappe.get_all(doctype, filters=filters, pluck="name", order_by="idx asc, name asc")
	return {name: frappe.get_doc(doctype, name) for name in names}


def _values(doc) -> dict[str, Any]:
	return {df.fieldname: doc.get(df.fieldname) for df in doc.meta.fields}
