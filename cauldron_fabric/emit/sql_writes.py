"""Raw SQL writes as events (``via: sql``): an UPDATE (``frappe.db.sql("UPDATE …")``,
``frappe.qb.update(…).run()``) as ``updated``, a DELETE (``frappe.db.delete(…)``, raw or built
with the query builder) as ``deleted``, an INSERT (``frappe.db.bulk_insert``, see
``sql_inserts.py``) as ``created``, and one with ON DUPLICATE KEY UPDATE, or a REPLACE, as
``updated`` for the documents stored under its names (``_plan_upsert``). Patches, ERPNext's
status updaters and custom apps write so with no document hook and no set_value. A statement is
read past the comments before it and MariaDB's ``SET STATEMENT … FOR`` (core/sql_kinds.py).
A LOAD DATA into a watched table is logged, with no event: its rows are in a file.

The app wraps ``Database.sql`` once per process, as it wraps set_value (``watch.py``).
For an UPDATE of a DocType that emits events, the wrapper reads the rows the statement is about
to write (a SELECT of their names and the columns it sets, with the statement's own tables and
WHERE: ``sql_reads.py``), lets Frappe run it, and records each document's update as a set_value
of those columns would be: from the document as stored before to the document as stored after,
nothing when nothing changed, a child row's as its parent's update at commit, and a write from a
document's own save hooks right after that save's event.

An UPDATE that sets a document's ``name`` (a rename in SQL) is that document's ``renamed``
event, then its ``updated`` when it also changed other columns (``sql_renames.py``).

A DELETE puts aside each document it is about to delete, whole (``sql_deletes.py``), and
records ``deleted`` for each one gone after it, with the document as it was; a deleted child
table row is its parent's update at commit. A TRUNCATE (``frappe.db.truncate``) is the DELETE of
every row it is; MariaDB commits before it and it cannot be rolled back, so its events are
committed right after it (``TruncateCommitted``). A write to Singles' values (``tabSingles``) is
each Single's update (``sql_singles.py``).

Left alone:

* every other statement, and Frappe's own writes that have events of their own or are
  bookkeeping: an insert (``db_insert``), a save (through ``db_update``, and its DELETE of rows
  taken out of a table), ``set_value`` (and so ``db_set``), ``delete_doc``'s DELETE of the
  document and its rows, a rename (which also rewrites every link to the renamed document: its
  ``renamed`` event tells those). What a deletion does to other documents (Frappe deletes
  their ToDos, Comments and shares, and clears Communications' references) is theirs, recorded;
* by default (Fabric Settings → *Writes without document hooks*; *None* leaves every raw write
  alone), an UPDATE that writes only Frappe's bookkeeping columns: the tree bounds (``lft``,
  ``rgt``), ``modified``, what Desk keeps per document (``_assign``, ``_comments``,
  ``_liked_by``, ``_seen``, ``_user_tags``), a document's ``idx`` and the counters
  ``FRAPPE_BOOKKEEPING`` and ``RAW_BOOKKEEPING`` name; *Every write* counts those too;
* a statement the fabric cannot read (``core/sql_statements.py``): logged once per process, with
  its start, and run as it is.
"""

from __future__ import annotations

import frappe
from frappe.model.delete_doc import delete_from_table
from frappe.model.document import Document
from frappe.model.rename_doc import rename_doc
from pymysql.err import MySQLError

from cauldron_fabric.core.sql_inserts import parse_insert, parse_insert_select, replace_as_insert
from cauldron_fabric.core.sql_kinds import (
	DELETE,
	INSERT,
	LOAD,
	REPLACE,
	TRUNCATE,
	UPDATE,
	doctypes_named,
	statement_body,
)
from cauldron_fabric.core.sql_statements import (
	Statement,
	Target,
	parse_delete,
	parse_truncate,
	parse_update,
)
from cauldron_fabric.emit.document_events import stored_names
from cauldron_fabric.emit.frames import inside_any
from cauldron_fabric.emit.policy import (
	SET_VALUES_ALL,
	SET_VALUES_NONE,
	SQL,
	current_policy,
)
from cauldron_fabric.emit.set_values import FRAPPE_BOOKKEEPING, PlannedWrite, ValuesBefore, plan_documents
from cauldron_fabric.emit.sql_deletes import plan_deletion
from cauldron_fabric.emit.sql_doctypes import (
	doctype_of,
	# Named here by the hooks Frappe cached before it moved (until a migrate or clear-cache).
	forget_missing_doctypes,  # noqa: F401
	is_watched,
)
from cauldron_fabric.emit.sql_inserts import WANTED, PlannedInsert, plan_insert
from cauldron_fabric.emit.sql_reads import (
	_columns_of,
	_other_unique_keys,
	_rows_before,
	_rows_selected,
	_spelled,
	_table_columns,
)
from cauldron_fabric.emit.sql_renames import _plan_rename
from cauldron_fabric.emit.sql_singles import singles_written, writes_singles
from cauldron_fabric.emit.unrecorded import (
	Loaded,
	ReadRefused,
	log_once,
	log_unreadable,
	read_or_refused,
)

# Columns Frappe keeps up to date itself: nested-set bounds, the time of the last change, and
# Desk's per-document lists. An UPDATE of these alone is bookkeeping.
BOOKKEEPING_COLUMNS = frozenset(
	{"lft", "rgt", "modified", "modified_by", "_assign", "_comments", "_liked_by", "_seen", "_user_tags"}
)
# Frappe's raw UPDATEs that keep track of use, not change a document: a login's time and
# address (Session.start; user.login tells it), and a document's idx, which for a document (not
# a child row, whose idx is its place in the table) counts how often it is picked in Link
# fields (link_count.update_link_count, every hour, one UPDATE per document picked).
RAW_BOOKKEEPING = {"User": frozenset({"last_login", "last_ip", "last_active"})}
DOCUMENT_BOOKKEEPING = frozenset({"idx"})
# A child row's columns that say whose table it is in.
MOVING_COLUMNS = frozenset({"parent", "parenttype", "parentfield"})
# Frappe's own functions whose raw writes have events of their own (see the module's docstring).
FRAPPES_OWN = frozenset(
	function.__code__ for function in (rename_doc, delete_from_table, Document.update_child_table)
)


def plan_sql_write(db, kind: str, query: str, values) -> list | None:
	"""Reads what an UPDATE, DELETE, INSERT or TRUNCATE statement is about to change, or returns None
	when the fabric leaves it alone (see the module's docstring)."""
	if db is not getattr(frappe.local, "db", None):  # (Frappe's own writes: left by watch.py)
		return None
	policy = current_policy()
	if not policy.enabled or policy.set_values == SET_VALUES_NONE:
		return None
	named = doctypes_named(query)
	watched = {doctype for doctype in named if is_watched(doctype)}
	singles = writes_singles(kind, named)
	if not (watched or singles) or inside_any(FRAPPES_OWN):
		return None
	try:
		text = _as_run(db, query, values)
	except Exception:
		return None  # values that do not fit the statement: Frappe's own run of it raises
	if not isinstance(text, str):
		log_unreadable(kind, query)
		return None
	if kind == LOAD:
		return [Loaded(query, sorted(watched | ({"Singles"} if singles else set())))]
	# (after the values are in place: a SET STATEMENT's own values may come first)
	text = statement_body(text)
	if kind == REPLACE:
		text = replace_as_insert(text)
		if text is None:
			log_unreadable(kind, query)
			return None
	writes = _plan_singles(kind, text, query) if singles else []
	if watched:
		writes += _plan_tables(kind, text, query, watched, policy) or []
	return writes or None


def _plan_singles(kind: str, text: str, query: str) -> list:
	"""Plans the update of each Single whose values a statement writes in tabSingles (read by
	sql_singles.py), as a set_value of it."""
	try:
		with read_or_refused():
			doctypes = singles_written(kind, text, _columns_of)
	except ReadRefused as refused:
		return [refused.unrecorded(kind, query)]
	if doctypes is None:
		log_unreadable(kind, query)
		return []
	singles = [d for d in sorted(doctypes) if is_watched(d) and frappe.get_meta(d).issingle]
	return [write for write in (_plan_rows(doctype, [doctype]) for doctype in singles) if write is not None]


def _plan_tables(kind: str, text: str, query: str, watched: set[str], policy) -> list | None:
	"""Plans the events of what a statement writes in the ``watched`` DocTypes' tables."""
	if kind in (INSERT, REPLACE):
		try:
			with read_or_refused(MySQLError):
				return _plan_insert(text, query, watched, replacing=kind == REPLACE)
		except ReadRefused as refused:
			return [refused.unrecorded(kind, query)]
	if kind == UPDATE:
		statement = parse_update(text, _columns_of)
	else:
		statement = parse_delete(text) if kind == DELETE else parse_truncate(text)
	if statement is None:
		log_unreadable(kind, query)
		return None
	writes = []
	for target in statement.targets:
		doctype = doctype_of(target.table)
		if doctype not in watched:
			continue
		try:
			with read_or_refused(MySQLError):  # every read of the planning
				if kind in (DELETE, TRUNCATE):
					write = _plan_deletion(statement, target, doctype)
				else:
					write = _plan_target(statement, target, doctype, policy.set_values == SET_VALUES_ALL)
		except ReadRefused as refused:
			write = refused.unrecorded(kind, query)
		if write is not None:
			writes.append(write)
		if kind == TRUNCATE:
			writes.append(TruncateCommitted())  # after the deleted events (or the rows' notes)
	return writes or None


class TruncateCommitted:
	"""Commits a TRUNCATE's events right after it. MariaDB commits before a TRUNCATE, and no
	rollback undoes it: its events (a child table's rows are their parents' updates at commit)
	must not wait for a commit of the caller's that may never come."""

	def record(self) -> None:
		frappe.db.commit()


def _plan_insert(text: str, query: str, watched: set[str], replacing: bool = False) -> list | None:
	"""Reads which documents (or rows) an INSERT is about to insert (sql_inserts.py); with
	``replacing`` (a REPLACE, written as its INSERT), the documents stored under its names are
	about to be replaced: updated, as an upsert's."""
	statement = parse_insert(text, WANTED)
	if statement is not None:
		doctype = doctype_of(statement.table)
		rows = list(statement.rows)
	else:
		selecting = parse_insert_select(text)
		if selecting is None or "name" not in (column.lower() for column in selecting.columns):
			log_unreadable(INSERT, query)  # (without name: an autoincrement DocType's rows)
			return None
		doctype = doctype_of(selecting.table)
		rows = _rows_selected(selecting) if doctype in watched else []
	if doctype not in watched:
		return None
	names = [row.get("name") for row in rows]
	if None in names:  # an autoincrement DocType's rows, named by the database
		log_unreadable(INSERT, query)
		return None
	if replacing or (statement is not None and statement.upsert):
		return _plan_upsert(doctype, names, rows, replacing)
	write = plan_insert(doctype, names, rows)
	return [write] if write is not None else None


def _plan_upsert(doctype: str, names: list, rows: list[dict], replacing: bool = False) -> list | None:
	"""Reads what an ``INSERT … ON DUPLICATE KEY UPDATE`` (or, ``replacing``, a ``REPLACE``) is
	about to do: update the documents (or rows) stored under the names it gives, as an UPDATE of
	them would (a REPLACE sets the columns it does not list back to their defaults), and insert
	the others.

	Only where ``name`` is the table's one unique key: with another, a row could update (or a
	REPLACE delete) a document under another name, which the statement does not give; such a
	statement is logged, with no event."""
	other_keys = _other_unique_keys(doctype)
	if other_keys:
		log_once(
			f"{'replace' if replacing else 'upsert'} {doctype}",
			"Cauldron Fabric records no event for %s of %s, whose table has unique keys besides "
			"name (%s): a row may replace a document under another name. Read those documents' "
			"names first, then UPDATE them by name and INSERT the rest",
			"a REPLACE" if replacing else "an INSERT … ON DUPLICATE KEY UPDATE",
			doctype,
			", ".join(other_keys),
		)
		return None
	stored = stored_names(doctype, names)
	writes = [
		_plan_rows(doctype, [name for name in dict.fromkeys(names) if str(name) in stored])
		if stored
		else None,
		plan_insert(doctype, names, rows, stored),
	]
	return [write for write in writes if write is not None] or None


def _as_run(db, query: str, values) -> str:
	"""Returns the statement as the database client sends it: with its values in place, and
	formatted even with none given (``()``, ``{}``), which turns each ``%%`` into ``%``."""
	if values is None:
		return query
	if not values:
		return query % ({} if isinstance(values, dict) else ())
	return db.mogrify(query, values)


def _plan_target(
	statement: Statement, target: Target, doctype: str, every_write: bool
) -> PlannedWrite | PlannedInsert | None:
	"""Reads the rows of one table the statement is about to write."""
	columns = _table_columns(doctype, target.columns)
	if columns is None:
		return None  # a column the table lacks: Frappe's own statement fails as it always did
	if not every_write and columns <= _bookkeeping(doctype):
		return None
	istable = frappe.get_meta(doctype).istable
	if "name" in columns and not istable:
		# A rename (a row's is its parent's update, which compares the table's rows by content).
		if target.new_name is not None:
			return _plan_rename(statement, target, doctype, columns)
		log_once(
			f"rename {doctype}",
			"Cauldron Fabric records no event for a raw SQL UPDATE of %s that sets name to a value "
			"it cannot read before the statement runs (one reading a column the statement sets "
			"before name, or a random one): set name first, from the columns as stored, or rename "
			"with frappe.rename_doc, whose renamed event tells it",
			doctype,
		)
		return None
	# A child row's "before" is its parent's table (rows.py): its name is all that is wanted,
	# read as a tuple (a third of the memory of a dict, over a statement of many rows).
	rows = _rows_before(statement, target, as_dict=not istable)
	if istable:
		names = [row[0] for row in rows]
		write = _plan_rows(doctype, names)
	else:
		# Read under the statement's own column names: mapped to the table's spelling (MariaDB
		# compares column names without case) for comparing with the document as stored.
		befores = [ValuesBefore(_spelled(row, columns), doctype=doctype) for row in rows]
		names = [row.name for row in befores]
		write = _plan_rows(doctype, names, befores)
	if names and columns & MOVING_COLUMNS and istable:
		# Rows moved to another parent (or table): each is also in its new parent's table, as if
		# inserted there, once the statement has run (their old parents' updates are noted).
		return PlannedInsert(doctype, names)
	return write


def _plan_rows(doctype: str, names: list, befores: list | None = None) -> PlannedWrite | None:
	"""Plans the write of the documents (or child rows) ``names`` as set_values.py plans its own."""
	return plan_documents(
		doctype, lambda _doctype, names: names, names, PlannedWrite(doctype, SQL), befores=befores
	)


def _bookkeeping(doctype: str) -> frozenset[str]:
	"""Returns the columns of ``doctype`` an UPDATE of which alone is Frappe's bookkeeping."""
	kept = (
		BOOKKEEPING_COLUMNS
		| FRAPPE_BOOKKEEPING.get(doctype, frozenset())
		| RAW_BOOKKEEPING.get(doctype, frozenset())
	)
	return kept if frappe.get_meta(doctype).istable else kept | DOCUMENT_BOOKKEEPING


def _plan_deletion(statement: Statement, target: Target, doctype: str):
	"""Copies the documents (or, of a child table, notes the rows) a DELETE is about to delete."""
	rows = _rows_before(statement, target, as_dict=False)
	if not rows:
		return None
	names = [row[0] for row in rows]
	if frappe.get_meta(doctype).istable:
		# Each row noted with its table as it stands: its parent's update at commit.
		return _plan_rows(doctype, names)
	# As last committed when the names were read so (a locking read: a plain one sees the
	# transaction's snapshot, without what other users committed since).
	return plan_deletion(doctype, names, lock=not statement.joined)
