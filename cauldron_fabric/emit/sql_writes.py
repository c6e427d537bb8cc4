"""Raw SQL updates as ``updated`` events (``via: sql``): ``frappe.db.sql("UPDATE …")`` and
``frappe.qb.update(…).run()``, which patches, ERPNext's status updaters and custom apps use to
move statuses, quantities and flags with no document hook and no set_value.

The app wraps ``Database.sql`` once per process, as it wraps set_value (``set_values.py``).
For an UPDATE of a DocType that emits events, the wrapper reads the rows the statement is about
to write (a SELECT of their names and the columns it sets, with the statement's own tables and
WHERE), lets Frappe run it, and records each document's update as a set_value of those columns
would be: from the document as stored before to the document as stored after, nothing when
nothing changed, a child row's as its parent's update at commit, and a write from a document's
own save hooks right after that save's event.

Left alone:

* every statement that is not an UPDATE, and UPDATEs run by Frappe's own writes, which have
  events of their own or are bookkeeping: a save (through ``db_update``), ``set_value`` (and so
  ``db_set``), a rename (which also rewrites every link to the renamed document: its
  ``renamed`` event tells those);
* by default (Fabric Settings → *Writes without document hooks*), an UPDATE that writes only
  Frappe's bookkeeping columns: the tree bounds (``lft``, ``rgt``), ``modified``, and what Desk
  keeps per document (``_assign``, ``_comments``, ``_liked_by``, ``_seen``, ``_user_tags``),
  with the counters ``FRAPPE_BOOKKEEPING`` names; *Every write* counts those too;
* a statement the fabric cannot read (``core/sql_statements.py``): logged once per process, with
  its start, and run as it is.
"""

from __future__ import annotations

import frappe
from frappe.database.database import Database
from frappe.database.utils import EmptyQueryValues
from frappe.model.rename_doc import rename_doc

from cauldron_fabric.core.sql_statements import UpdateStatement, doctypes_named, is_update, parse_update
from cauldron_fabric.emit.frames import call_of
from cauldron_fabric.emit.held import in_place_of
from cauldron_fabric.emit.policy import (
	DEFAULT_DENIED,
	SET_VALUES_ALL,
	SET_VALUES_NONE,
	SQL,
	current_policy,
	is_fabric_doctype,
)
from cauldron_fabric.emit.set_values import (
	FRAPPE_BOOKKEEPING,
	PlannedWrite,
	ValuesBefore,
	frappe_writing,
	plan_documents,
)

# Columns Frappe keeps up to date itself: nested-set bounds, the time of the last change, and
# Desk's per-document lists. An UPDATE of these alone is bookkeeping.
BOOKKEEPING_COLUMNS = frozenset(
	{"lft", "rgt", "modified", "modified_by", "_assign", "_comments", "_liked_by", "_seen", "_user_tags"}
)
# Tables named tab… that hold no document events: no DocType's (naming series counters, Singles'
# values, login secrets, search index) or Frappe's defaults (a DocType, written as settings).
NOT_DOCTYPES = frozenset({"Series", "Singles", "DefaultValue", "__Auth", "__global_search"})

# Per site, the names after ``tab`` that turned out to be no DocType (a query each, once).
_not_doctypes: dict[str, set[str]] = {}
# Statement starts already logged as unreadable, per process.
_unreadable_logged: set[str] = set()


def plan_sql_update(db, query: str, values) -> list[PlannedWrite] | None:
	"""Reads what an UPDATE statement is about to change, or returns None when the fabric leaves
	it alone (see the module's docstring)."""
	if db is not getattr(frappe.local, "db", None) or frappe_writing():
		return None
	policy = current_policy()
	if not policy.enabled or policy.set_values == SET_VALUES_NONE:
		return None
	watched = {doctype for doctype in doctypes_named(query) if _watched(doctype)}
	if not watched or call_of(rename_doc) is not None:
		return None
	try:
		text = db.mogrify(query, values) if values else query
	except Exception:
		return None  # values that do not fit the statement: Frappe's own run of it raises
	statement = parse_update(text) if isinstance(text, str) else None
	if statement is None:
		_log_unreadable(query)
		return None
	writes = []
	for target in statement.targets:
		doctype = target.table[3:] if target.table.startswith("tab") else None
		if doctype in watched:
			write = _plan_target(statement, target, doctype, policy.set_values == SET_VALUES_ALL)
			if write is not None:
				writes.append(write)
	return writes or None


def _watched(doctype: str) -> bool:
	"""Tells whether writes to ``doctype``'s table may be events: it is a DocType, the fabric's
	policy emits its changes (or its parent's, for a child table), and it is not the fabric's."""
	if doctype in NOT_DOCTYPES or doctype in DEFAULT_DENIED:
		return False
	missing = _not_doctypes.setdefault(frappe.local.site, set())
	if doctype in missing:
		return False
	try:
		meta = frappe.get_meta(doctype)
	except frappe.DoesNotExistError:
		missing.add(doctype)
		return False
	if is_fabric_doctype(meta):
		return False
	return bool(meta.istable) or current_policy().kind_of(doctype) is not None


def _plan_target(statement: UpdateStatement, target, doctype: str, every_write: bool) -> PlannedWrite | None:
	"""Reads the rows of one table the statement is about to write."""
	columns = _table_columns(doctype, target.columns)
	if columns is None:
		return None  # a column the table lacks: Frappe's own statement fails as it always did
	if not every_write and columns <= BOOKKEEPING_COLUMNS | FRAPPE_BOOKKEEPING.get(doctype, frozenset()):
		return None
	# The statement's text with its own column names, mapped to the table's spelling (MariaDB
	# compares column names without case) for reading the document as stored.
	select = statement.select_before(target)
	try:
		rows = frappe.db.sql(select, as_dict=True)
	except Exception:
		# The statement names something the database refuses: Frappe's own run of it raises the
		# database's error, which its caller may expect (frappe.db.is_missing_column).
		return None
	befores = [ValuesBefore(_spelled(row, columns), doctype=doctype) for row in rows]
	names = [row.name for row in befores]
	return plan_documents(
		doctype, lambda _doctype, names: names, names, PlannedWrite(doctype, SQL), befores=befores
	)


def _table_columns(doctype: str, written: frozenset[str]) -> frozenset[str] | None:
	"""Returns the columns ``written`` as the table spells them, or None when it lacks one."""
	spelled = {column.lower(): column for column in frappe.db.get_table_columns(doctype)}
	columns = {spelled.get(column.lower()) for column in written}
	return None if None in columns else frozenset(columns)


def _spelled(row: dict, columns: frozenset[str]) -> dict:
	"""Returns ``row`` (read under the statement's column names) under the table's spelling."""
	by_lower = {column.lower(): column for column in columns}
	return {by_lower.get(key.lower(), key): value for key, value in row.items()}


def _log_unreadable(query: str) -> None:
	"""Logs, once per process and statement start, an UPDATE the fabric records nothing for."""
	start = " ".join(query.split())[:120]
	if start not in _unreadable_logged:
		_unreadable_logged.add(start)
		frappe.logger("cauldron_fabric").warning(
			"Cauldron Fabric records no event for this UPDATE, whose tables or columns it cannot "
			"tell apart (qualify each SET column with its table or alias): %s",
			start,
		)


def _values(args: tuple, kwargs: dict):
	"""Returns the values of an sql() call as Frappe passes them to the database client."""
	values = args[0] if args else kwargs.get("values", EmptyQueryValues)
	if values is EmptyQueryValues:
		return None
	return values if isinstance(values, tuple | dict | list) else (values,)


def watch_sql() -> None:
	"""Makes ``frappe.db.sql`` record the events of the UPDATE statements it runs (once per process)."""
	if getattr(Database.sql, "fabric_watched", False):
		return
	sql = Database.sql

	# Arguments pass through as given; only an UPDATE (a look at its first word) costs more.
	def sql_watched(self, query, *args, **kwargs):
		if type(query) is not str or not is_update(query) or not kwargs.get("run", True):
			return sql(self, query, *args, **kwargs)
		if kwargs.get("auto_commit"):
			# Frappe commits before the statement and after it: after its events, here.
			self.commit()
			result = sql_watched(self, query, *args, **{**kwargs, "auto_commit": 0})
			self.commit()
			return result
		writes = plan_sql_update(self, query, _values(args, kwargs))
		result = sql(self, query, *args, **kwargs)
		for write in writes or ():
			write.record()
		return result

	Database.sql = in_place_of(sql, sql_watched)


watch_sql()
