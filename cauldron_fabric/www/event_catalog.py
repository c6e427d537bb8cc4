"""The event catalog page (/event-catalog): every event type, its owner, versions and examples."""

from __future__ import annotations

import frappe
from frappe import _

from cauldron_fabric.registry.documentation import catalog_page

no_cache = 1


def get_context(context) -> None:
	"""Lists the latest version of every event type for people who may read Event Schema."""
	if frappe.session.user == "Guest":
		frappe.throw(_("Log in to see the event catalog."), frappe.PermissionError)
	frappe.has_permission("Event Schema", "read", throw=True)
	context.events = catalog_page()
	# Page templates get a safe ``frappe`` without ``frappe.local``: the site is passed on.
	context.site = frappe.local.site
	context.title = _("Event catalog")
	context.no_breadcrumbs = True
