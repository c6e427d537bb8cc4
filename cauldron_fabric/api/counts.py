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
(frappe/frappe#35657); a user who may not read a DocType gets a PermissionError. A virtual
DocType is counted by its controller, as Frappe's list view counts it, for a user who may read
it; a Single holds no list, and counting one is a validation error. A child table's rows are
counted for a user who may read the ``parent_doctype`` named with them, as Frappe's list
endpoints do. Malformed parameters are validation errors that name them, never an HTTP 500.
"""

from __future__ import annotations

import json
from collections import Counter

import frappe
from frappe import _
from frappe.desk import listview
from frappe.desk.reportview import validate_args
from frappe.model import is_default_field
from frappe.model.base_document import get_controller

from cauldron_fabric.api.params import is_filter_value, required, text_param


@frappe.whitelist()
def get_count(
	doctype: str | None = None, filters=None, debug=False, cache=False, parent_doctype: str | None = None
) -> int:
	"""Frappe's frappe.client.get_count, counting only the documents the caller may list."""
	meta = frappe.get_meta(_existing_doctype(doctype))
	filters = _checked_filters(doctype, filters)
	if not _keeps_table(meta):
		return _count_without_table(meta, filters)
	if meta.istable and not parent_doctype:
		frappe.throw(
			_(
				"{0} is a child table: its rows are counted for the DocType they belong to. Pass that"
				" DocType as parent_doctype (one you may read, such as {1})."
			).format(doctype, _a_parent_of(doctype)),
			title=_("Parent DocType needed"),
		)
	field = f"count(`tab{doctype}`.name) as total_count"
	rows = frappe.get_list(doctype, filters=filters, fields=[field], parent_doctype=parent_doctype)
	return rows[0].total_count


@frappe.whitelist()
def get_group_by_count(
	doctype: str | None = None, current_filters: str | None = None, field: str | None = None
) -> list[dict]:
	"""Frappe's list sidebar counts, assignees counted over the documents the caller may list.

	The filters of every DocType are checked first: Frappe's method hands them to frappe.get_list
	as they come, and any user could put SQL of their own into its query.
	"""
	meta = frappe.get_meta(_existing_doctype(doctype))
	field = text_param(required(field, "field"), "field")
	filters = _checked_filters(doctype, current_filters, "current_filters")
	if field != "assigned_to" and not (meta.has_field(field) or is_default_field(field)):
		# Frappe's own check raised a ValueError: an HTTP 500 for a misspelt field.
		frappe.throw(
			_("{0} has no field {1}: count by one of its fields, or by assigned_to.").format(
				doctype, repr(field)
			),
			title=_("Unknown field"),
		)
	if not _keeps_table(meta):
		_require_listing(doctype)
		# Frappe queries the table a Single or virtual DocType does not have (HTTP 500); a virtual
		# DocType's controller lists its documents, but its assignees are found only by a query.
		if meta.issingle or field == "assigned_to":
			_refuse_without_table(meta, _("grouped and counted by {0}").format(field))
		return _group_count_without_table(meta, filters, field)
	if field != "assigned_to":
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


def _count_without_table(meta, filters) -> int:
	"""Counts a virtual DocType's documents as Frappe's list view counts them, through its controller.

	A Single has no list to count: Frappe's count queried a table it does not have (HTTP 500).
	"""
	_require_listing(meta.name)
	controller = get_controller(meta.name) if meta.get("is_virtual") else None
	if not callable(getattr(controller, "get_count", None)):
		_refuse_without_table(meta, _("counted"))
	return controller.get_count(frappe._dict(doctype=meta.name, filters=filters))


def _group_count_without_table(meta, filters, field: str) -> list[dict]:
	"""Counts a virtual DocType's documents by ``field`` through its controller, as the sidebar shows them.

	Frappe hands a grouped count to the controller's get_list, which lists documents, not groups:
	the sidebar showed each document's name with an undefined count. Documents without a value
	are left out (a circuit has no creator), as the sidebar then says there is nothing to count.
	"""
	controller = get_controller(meta.name)
	if not callable(getattr(controller, "get_list", None)):
		_refuse_without_table(meta, _("grouped and counted by {0}").format(field))
	rows = controller.get_list(
		frappe._dict(doctype=meta.name, filters=filters, start=0, page_length=1_000_000)
	)
	counted = Counter(row.get(field) for row in rows if row.get(field) not in (None, ""))
	return [frappe._dict(name=value, count=count) for value, count in counted.most_common(50)]


def _require_listing(doctype: str) -> None:
	"""Raises PermissionError unless the session user may list ``doctype``, as frappe.get_list checks.

	Frappe's list skips the check for a virtual DocType, leaving it to the controller.
	"""
	ptype = "select" if frappe.only_has_select_perm(doctype) else "read"
	if not frappe.has_permission(doctype, ptype):
		frappe.throw(
			_("You may not read {0}, so its documents are not counted for you.").format(doctype),
			frappe.PermissionError,
			title=_("Not permitted"),
		)


def _refuse_without_table(meta, action: str) -> None:
	"""Says that a Single or virtual DocType's documents cannot be ``action`` here, and what to do instead."""
	if meta.issingle:
		message = _(
			"{0} is a Single DocType: it holds one document, not a list, so it cannot be {1}. Read it"
			" with frappe.client.get (doctype {0})."
		)
	else:
		message = _(
			"{0} is a virtual DocType: its documents are kept by its controller, not in a table, so"
			" they cannot be {1}. List them with frappe.client.get_list instead."
		)
	frappe.throw(message.format(meta.name, action), title=_("Cannot be counted"))


def _checked_filters(doctype: str, filters, name: str = "filters"):
	"""Returns the filters parsed and checked as Frappe's list endpoints check theirs.

	frappe.get_list takes a text among list conditions as SQL of its own: unchecked, a count
	would run any subquery its caller wrote. Frappe checks only the fields its conditions name,
	so a condition of another shape (a number, a text, a list too short, an object as a value)
	is refused here by ``name``: it failed deep in Frappe's query building with HTTP 500.
	"""
	try:
		parsed = json.loads(filters) if filters and isinstance(filters, str) else filters
	except json.JSONDecodeError:
		frappe.throw(
			_(
				'Filters must be JSON: a dict such as {{"status": "Open"}} or a list of conditions, not {0}.'
			).format(repr(filters)),
			title=_("Invalid filters"),
		)
	if parsed and not isinstance(parsed, dict | list):
		frappe.throw(
			_(
				'{0} must be a dict such as {{"status": "Open"}} or a list of conditions such as'
				' [["status", "=", "Open"]], not {1}.'
			).format(name, repr(parsed)),
			title=_("Invalid filters"),
		)
	keyed = isinstance(parsed, dict)
	for condition in parsed.items() if keyed else parsed or ():
		_check_condition(doctype, condition, keyed, name)
	return validate_args(frappe._dict(doctype=doctype, filters=parsed)).filters


def _check_condition(doctype: str, condition, keyed: bool, name: str) -> None:
	"""Refuses a condition of ``name`` that Frappe cannot build a query from, saying what it lacks.

	``keyed`` conditions are a dict's (field, value) items; the others are a list's items.
	"""
	if isinstance(condition, str):
		# Not repeated in the answer: it is SQL of the caller's, which should show it was never run.
		frappe.throw(
			_(
				"{0} hold a text where a condition belongs, which Frappe would run as SQL: give"
				" [field, operator, value] or [doctype, field, operator, value] instead."
			).format(name),
			title=_("Invalid filters"),
		)
	parts = _condition_parts(doctype, condition, keyed)
	if parts is None:
		reason = _(
			"a condition is [field, operator, value] or [doctype, field, operator, value], and a dict"
			" gives each field a value or [operator, value]"
		)
	elif not (parts[0] and isinstance(parts[0], str) and isinstance(parts[1], str)):
		reason = _("a DocType and a field are named by a text")
	elif "." in parts[1]:
		# Frappe takes what follows the dot for a standard field and leaves it unchecked, then
		# quotes the whole text as one column: a database error.
		reason = _("a field is named by itself, with no table before it")
	elif not (parts[2] is None or isinstance(parts[2], str)):
		reason = _('an operator is a text such as "=" or "like"')
	elif not _is_value(parts[3]):
		reason = _("a value is a text, a number, or a list of them")
	else:
		return
	shown = dict([condition]) if keyed else condition
	frappe.throw(
		_("{0} hold {1}, which is no condition: {2}.").format(name, repr(shown), reason),
		title=_("Invalid filters"),
	)


def _condition_parts(doctype: str, condition, keyed: bool) -> tuple | None:
	"""Returns a condition as (doctype, field, operator, value), ``doctype`` when it names none, or
	None when it has none of Frappe's shapes."""
	if keyed:
		field, value = condition
		condition = (field, *value[:2]) if isinstance(value, list | tuple) else (field, "=", value)
	if not isinstance(condition, list | tuple) or len(condition) < 3:
		return None
	# Frappe reads the first four parts of a longer condition (the list view adds a fifth).
	return (doctype, *condition) if len(condition) == 3 else tuple(condition[:4])


def _is_value(value) -> bool:
	"""Tells whether ``value`` is one Frappe writes into a condition: a scalar, or a list of them."""
	if isinstance(value, list | tuple):
		return all(is_filter_value(item) for item in value)
	return is_filter_value(value)


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


def _keeps_table(meta) -> bool:
	return not (meta.get("is_virtual") or meta.issingle)
