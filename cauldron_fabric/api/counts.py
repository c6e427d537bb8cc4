"""Counting the fabric's DocTypes through Frappe's generic count endpoints, with permissions.

Frappe's ``frappe.client.get_count`` counts with ``frappe.db.count``, and the list sidebar's
"Assigned To" counts (``frappe.desk.listview.get_group_by_count``) over every document its
filters match: neither checks a permission. Event Log, Event Delivery and Dead Letter rows carry
whole documents in their envelope: a count filtered on it (``envelope like '%"net_pay": 9%'``)
answers yes or no to a guess at any value, so any logged-in user could read payloads one guess
at a time; counts of Approval Requests by name would tell which request ids exist and who
decides them. The fabric's DocTypes are counted through ``frappe.get_list``, which applies role,
share and user permissions and the permission query conditions; any other DocType is counted
as Frappe counts it.
"""

from __future__ import annotations

import json

import frappe
from frappe import client
from frappe.desk import listview
from frappe.desk.reportview import validate_args

from cauldron_fabric.emit.policy import MODULE


@frappe.whitelist()
def get_count(doctype: str, filters=None, debug=False, cache=False) -> int:
	"""Frappe's frappe.client.get_count, counting only the fabric documents the caller may list."""
	if not _fabric_table(doctype):
		return client.get_count(doctype, filters, debug, cache)
	field = f"count(`tab{doctype}`.name) as total_count"
	rows = frappe.get_list(doctype, filters=_checked_filters(doctype, filters), fields=[field])
	return rows[0].total_count


@frappe.whitelist()
def get_group_by_count(doctype: str, current_filters: str, field: str) -> list[dict]:
	"""Frappe's list sidebar counts, the fabric's assignees counted over the documents the caller may list.

	The filters of every DocType are checked first: Frappe's method hands them to frappe.get_list
	as they come, and any user could put SQL of their own into its query.
	"""
	filters = _checked_filters(doctype, current_filters)
	if field != "assigned_to" or not _fabric_table(doctype):
		return listview.get_group_by_count(doctype, json.dumps(filters), field)
	listed = frappe.get_list(doctype, filters=filters, fields=["name"], limit_page_length=0, run=0)
	# Values are written into the query, as in the listing's own SQL (whose "%" must stay as is).
	return frappe.db.sql(
		f"""SELECT todo.allocated_to AS name, COUNT(*) AS count FROM `tabToDo` todo
		JOIN `tabUser` user ON user.name = todo.allocated_to
		WHERE todo.status != 'Cancelled' AND user.user_type = 'System User'
		AND todo.reference_type = {frappe.db.escape(doctype, percent=False)}
		AND todo.reference_name IN ({listed})
		GROUP BY todo.allocated_to ORDER BY count DESC LIMIT 50""",
		as_dict=True,
	)


def _checked_filters(doctype: str, filters):
	"""Returns the filters parsed and checked as Frappe's list endpoints check theirs.

	frappe.get_list takes a text among list conditions as SQL of its own: unchecked, a count
	would run any subquery its caller wrote.
	"""
	return validate_args(frappe._dict(doctype=doctype, filters=filters)).filters


def _fabric_table(doctype: str) -> bool:
	"""Tells whether ``doctype`` is one of the fabric's DocTypes kept in a table (not virtual)."""
	if not frappe.db.exists("DocType", doctype):
		return False
	meta = frappe.get_meta(doctype)
	return meta.module == MODULE and not meta.get("is_virtual")
