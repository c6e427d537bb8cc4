"""Permission checks shared by the API modules.

``frappe.only_for`` is skipped while tests run, which would leave these checks untested;
this one always applies.
"""

from __future__ import annotations

import frappe
from frappe import _

MANAGERS = ("System Manager", "Fabric Manager")


def require_role(*roles: str) -> None:
	"""Raises PermissionError unless the session user has one of ``roles`` (Fabric managers by default)."""
	allowed = roles or MANAGERS
	if set(allowed).isdisjoint(frappe.get_roles()):
		frappe.throw(
			_("Only {0} may do this.").format(" or ".join(_(role) for role in allowed)),
			frappe.PermissionError,
			title=_("Not permitted"),
		)
