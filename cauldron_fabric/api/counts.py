"""Frappe's generic count endpoints, counting only what the caller may list.

Frappe v15's ``frappe.client.get_count`` counts with ``frappe.db.count``, and the list sidebar's
"Assigned To" counts (``frappe.desk.listview.get_group_by_count``) over every document its
filters match: neither checks a permission. A count filtered on a column answers yes or no to a
guess at its value, so any logged-in user could read what they may not see one guess at a time:
Event Log, Event Delivery and Dead Letter rows carry whole documents in their envelope
(``envelope like '%"net_pay": 9%'``); Comments on Approval Requests hold the approvers' notes;
Error Logs hold tracebacks; counts of Approval Requests by name tell which request ids exist.
Every DocType kept in a table is counted through ``frappe.get_list``, which applies role, share
and user permissions and the permission query conditions, as later Frappe releases count
(frappe/frappe#35657); a user who may not read a DocType gets a PermissionError. Virtual and
Single DocTypes are counted as Frappe counts them. A child table's rows are counted for a
user who may read the ``parent_doctype`` named with them, as Frappe's list endpoints do.
"""

from __future__ import annotations

import json

import frappe
from frappe import _, client
from frappe.desk import listview
from frappe.desk.reportview import validate_args

from cauldron_fabric.api.params import required, text_param


@frappe.whitelist()
def get_count(doctype: str, filters=None, debug=False, cache=False, parent_doctype: str | None = None) -> int:
	"""Frappe's frappe.client.get_count, counting only the documents the caller may list."""
	meta = frappe.get_meta(_existing_doctype(doctype))
	if not _keeps_table(meta):
		return client.get_count(doctype, filters, debug, cache)
	if meta.istable and not parent_doctype:
		frappe.throw(
			_(
				"{0} is a child table: its rows are counted for the DocType they belong to. Pass that"
				" DocType as parent_doctype (one you may read, such as {1})."
			).format(doctype, _a_parent_of(doctype)),
			title=_("Parent DocType needed"),
		)
	field = f"count(`tab{doctype}`.name) as total_count"
	rows = frappe.get_list(
		doctype, filters=_checked_filters(doctype, filters), fields=[field], parent_doctype=parent_doctype
	)
	return rows[0].total_count


@frappe.whitelist()
def get_group_by_count(doctype: str, current_filters: str, field: str) -> list[dict]:
	"""Frappe's list sidebar counts, assignees counted over the documents the caller may list.

	The filters of every DocType are checked first: Frappe's method hands them to frappe.get_list
	as they come, and any user could put SQL of their own into its query.
	"""
	filters = _checked_filters(doctype, current_filters)
	if field != "assigned_to" or not _table(doctype):
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
	try:
		return validate_args(frappe._dict(doctype=doctype, filters=filters)).filters
	except json.JSONDecodeError:
		frappe.throw(
			_(
				'Filters must be JSON: a dict such as {{"status": "Open"}} or a list of conditions, not {0}.'
			).format(repr(filters)),
			title=_("Invalid filters"),
		)


def _a_parent_of(doctype: str) -> str:
	"""Names a DocType with a table field of ``doctype``, for the error that asks for one."""
	parents = frappe.get_all(
		"DocField",
		filters={"options": doctype, "fieldtype": ["in", frappe.model.table_fields]},
		pluck="parent",
	)
	return parents[0] if parents else "the DocType whose table field holds them"


def _existing_doctype(doctype) -> str:
	"""Returns ``doctype`` when it names a DocType; else says so (Frappe's count answered a 500
	with the database's error for a missing table)."""
	text_param(required(doctype, "doctype"), "doctype")
	if not frappe.db.exists("DocType", doctype):
		frappe.throw(_("There is no DocType {0}.").format(doctype), frappe.DoesNotExistError)
	return doctype


def _table(doctype: str) -> bool:
	"""Tells whether ``doctype`` keeps its documents in a table of their own (not virtual or Single)."""
	return bool(frappe.db.exists("DocType", doctype)) and _keeps_table(frappe.get_meta(doctype))


def _keeps_table(meta) -> bool:
	return not (meta.get("is_virtual") or meta.issingle)
