"""Frappe's methods the fabric wraps once per process: its writes without document hooks
(recorded by ``set_values.py``), its raw SQL writes (``sql_writes.py``) and its savepoints
(followed by ``held.py``).

A process must wrap them before its first write, or that write is lost. Web requests and jobs
do so from the app's ``before_request`` and ``before_job`` hooks, ``bench migrate`` from
``before_migrate``, consumers from their tracking store. ``bench execute``, ``bench console``,
``bench run-patch`` and every other bench command run none of those hooks: there the wraps
come from ``cauldron_fabric.commands``, which ``bench`` imports in each command's process
before the command runs (``frappe.utils.bench_helper`` imports every app's ``commands`` module
to list its commands).

Every bench command imports this module, so it stays light: a wrapper imports ``set_values.py``
or ``sql_writes.py`` (and with them the recording path, about half a second of imports) at its
first call that may record something.
"""

from __future__ import annotations

import sys

import frappe
from frappe.database.database import Database
from frappe.database.utils import EmptyQueryValues
from frappe.model.base_document import BaseDocument
from pypika.queries import QueryBuilder

from cauldron_fabric.core.sql_kinds import TRANSACTION, statement_kind, transaction_step
from cauldron_fabric.emit.frames import inside_any
from cauldron_fabric.emit.held import (
	FRAPPES_TRANSACTION_ENDS,
	end_waiting,
	follow_savepoint,
	in_place_of,
	watch_savepoints,
)

# Set (in frappe.local) while one of Frappe's writes whose events the fabric makes itself runs:
# set_value, set_single_value, db_update, db_insert, the permission pages' methods
# (permissions.py). Their SQL is theirs to tell, not sql_writes.py's.
WRITING = "fabric_frappe_writing"


def watch_writes() -> None:
	"""Makes every Frappe method the fabric follows tell it what it does (once per process):
	savepoints, ``frappe.db.set_value``, ``set_single_value``, ``db_update``, ``db_insert`` (marked
	as Frappe's own) and ``frappe.db.sql``.

	Harmless on a site without the app: the wrappers record nothing there (``load_policy``).
	"""
	watch_savepoints()
	watch_set_values()
	watch_sql()


def frappe_writing() -> bool:
	"""Tells whether one of Frappe's writes whose events the fabric makes itself is running."""
	return bool(getattr(frappe.local, WRITING, 0))


def written_by_frappe(method, *args, **kwargs):
	"""Calls Frappe's write ``method``, whose events the fabric makes itself, marked as running
	for the SQL it issues."""
	local = frappe.local
	depth = getattr(local, WRITING, 0)
	setattr(local, WRITING, depth + 1)
	try:
		return method(*args, **kwargs)
	finally:
		setattr(local, WRITING, depth)


def watch_set_values() -> None:
	"""Makes ``frappe.db.set_value``, ``set_single_value`` and a document's ``db_update`` record
	their events (once per process)."""
	if getattr(Database.set_value, "fabric_watched", False):
		return
	set_value, set_single_value = Database.set_value, Database.set_single_value
	db_update = BaseDocument.db_update

	# Arguments pass through as given, so that a Frappe release adding one keeps working.
	def set_value_watched(self, dt, dn, *args, **kwargs):
		write = None
		if dn is not None and dt != dn:  # else Frappe writes a Single: set_single_value below
			fields = args[0] if args else kwargs.get("field")
			update_modified = _update_modified(args, 4, kwargs)
			write = _recording().plan(self, dt, dn, fields, update_modified, sys._getframe(1))
		result = written_by_frappe(set_value, self, dt, dn, *args, **kwargs)
		if write is not None:
			write.record()
		return result

	def set_single_value_watched(self, doctype, *args, **kwargs):
		fields = args[0] if args else kwargs.get("fieldname")
		update_modified = kwargs.get("update_modified", True)
		write = _recording().plan(self, doctype, doctype, fields, update_modified, sys._getframe(1))
		result = written_by_frappe(set_single_value, self, doctype, *args, **kwargs)
		if write is not None:
			write.record()
		return result

	def db_update_watched(self, *args, **kwargs):
		write = _recording().plan_db_update(self, sys._getframe(1))
		result = written_by_frappe(db_update, self, *args, **kwargs)
		if write is not None:
			write.record()
		return result

	Database.set_value = in_place_of(set_value, set_value_watched)
	Database.set_single_value = in_place_of(set_single_value, set_single_value_watched)
	BaseDocument.db_update = in_place_of(db_update, db_update_watched)
	# Frappe's insert of a document or row (its event comes from the document's hooks): its
	# INSERT is Frappe's own, and marked so costs the SQL wrap no more than a flag's look.
	db_insert = BaseDocument.db_insert

	def db_insert_marked(self, *args, **kwargs):
		return written_by_frappe(db_insert, self, *args, **kwargs)

	BaseDocument.db_insert = in_place_of(db_insert, db_insert_marked)


def watch_sql() -> None:
	"""Makes ``frappe.db.sql`` record the events of the write statements it runs (once per
	process; see sql_writes.py), and follow the savepoints it sets, rolls back to and releases
	(held.py)."""
	if getattr(Database.sql, "fabric_watched", False):
		return
	sql = Database.sql

	# Arguments pass through as given; only a write (a look at its first word) costs more.
	def sql_watched(self, query, *args, **kwargs):
		# Frappe runs str(query) of a query builder object passed to sql() rather than run().
		text = query if type(query) is str else str(query) if isinstance(query, QueryBuilder) else None
		kind = statement_kind(text) if text is not None else None
		if kind is None:
			return sql(self, query, *args, **kwargs)
		if kind is TRANSACTION:
			if not kwargs.get("run", True) or self is not getattr(frappe.local, "db", None):
				return sql(self, query, *args, **kwargs)
			step, savepoint = transaction_step(text) or (None, None)
			if savepoint is not None:
				# A savepoint set, rolled back to or released in raw SQL: what is held follows
				# it, as it follows frappe.db's savepoint methods (which come this way too).
				result = sql(self, query, *args, **kwargs)
				follow_savepoint(step, savepoint)
				return result
			if step is not None and not inside_any(FRAPPES_TRANSACTION_ENDS):
				# A raw COMMIT or ROLLBACK ends the transaction as Frappe's own do, callbacks
				# and all: what the fabric holds for the commit is in its before_commit ones.
				if step == "commit":
					self.commit()
				else:
					self.rollback()
				return ()
			return sql(self, query, *args, **kwargs)
		end_waiting(kind, text)  # documents waiting for their rows come before another write
		if not kwargs.get("run", True) or frappe_writing():
			return sql(self, query, *args, **kwargs)
		if kwargs.get("auto_commit"):
			# Frappe commits before the statement and after it: after its events, here.
			self.commit()
			result = sql_watched(self, query, *args, **{**kwargs, "auto_commit": 0})
			self.commit()
			return result
		from cauldron_fabric.emit.sql_writes import plan_sql_write

		writes = plan_sql_write(self, kind, text, _values(args, kwargs)) or ()
		try:
			result = sql(self, query, *args, **kwargs)
		except BaseException:
			for write in writes:
				if hasattr(write, "discard"):
					write.discard()  # what it put aside for the events (sql_deletes.py)
			raise
		for write in writes:
			write.record()
		return result

	Database.sql = in_place_of(sql, sql_watched)


def _values(args: tuple, kwargs: dict):
	"""Returns the values of an sql() call as Frappe passes them to the database client."""
	values = args[0] if args else kwargs.get("values", EmptyQueryValues)
	if values is EmptyQueryValues:
		return None
	return values if isinstance(values, tuple | dict | list) else (values,)


def _recording():
	"""Returns ``set_values.py``, which plans and records these writes (imported at the first)."""
	from cauldron_fabric.emit import set_values

	return set_values


def _update_modified(args: tuple, position: int, kwargs: dict) -> bool:
	"""Returns set_value's ``update_modified``, given by keyword or in its place after ``dn``."""
	if "update_modified" in kwargs:
		return bool(kwargs["update_modified"])
	return bool(args[position]) if len(args) > position else True
