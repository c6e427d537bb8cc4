"""Counting the fabric's DocTypes through Frappe's ``frappe.client.get_count``, with permissions.

Frappe's method counts with ``frappe.db.count``, which checks no permission at all. Event Log,
Event Delivery and Dead Letter rows carry whole documents in their envelope: a count filtered on
it (``envelope like '%"net_pay": 9%'``) answers yes or no to a guess at any value, so any
logged-in user could read payloads one guess at a time, and a count of Approval Requests by name
would tell which request ids exist. The fabric's DocTypes are counted through
``frappe.get_list``, which applies role, share and user permissions and the permission query
conditions; any other DocType is counted as Frappe counts it.
"""

from __future__ import annotations

import frappe
from frappe import client

from cauldron_fabric.emit.policy import MODULE


@frappe.whitelist()
def get_count(doctype: str, filters=None, debug=False, cache=False) -> int:
	"""Frappe's frappe.client.get_count, counting only the fabric documents the caller may list."""
	if not _fabric_table(doctype):
		return client.get_count(doctype, filters, debug, cache)
	field = f"count(`tab{doctype}`.name) as total_count"
	rows = frappe.get_list(doctype, filters=client.get_safe_filters(filters), fields=[field])
	return rows[0].total_count


def _fabric_table(doctype: str) -> bool:
	"""Tells whether ``doctype`` is one of the fabric's DocTypes kept in a table (not virtual)."""
	if not frappe.db.exists("DocType", doctype):
		return False
	meta = frappe.get_meta(doctype)
	return meta.module == MODULE and not meta.get("is_virtual")
