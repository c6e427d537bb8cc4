"""One document's event as recorded: its payload, its type, and ``business.transaction`` when due.

The payload carries the document (as saved, child tables included) and, for an update, what
changed. The type is ``<doctype>.<action>``, or ``system.change`` for the DocTypes Fabric
Settings class as system ones. A submit or cancel of a submittable document also records a
``business.transaction`` with the document's business summary. A write without document hooks
(db_set, set_value, db_update, raw SQL) that moves a submittable document's ``docstatus`` from
draft to submitted, or from submitted to cancelled, is that document's submit or cancel
(``STATUS_ACTIONS``): a patch that submits or cancels in SQL tells consumers so.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import frappe
from frappe.model.base_document import BaseDocument, get_controller
from frappe.model.document import Document
from frappe.model.utils import is_virtual_doctype
from frappe.utils.nestedset import NestedSet

from cauldron_fabric.core.naming import BUSINESS_TRANSACTION, SYSTEM_CHANGE, document_event_type
from cauldron_fabric.core.sql_kinds import unlimited
from cauldron_fabric.emit.changes import document_changes, document_payload
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.recorder import new_envelope, record

BUSINESS_ACTIONS = ("submitted", "cancelled")
BUSINESS_FIELDS = (
	"company",
	"customer",
	"supplier",
	"party_type",
	"party",
	"posting_date",
	"transaction_date",
	"grand_total",
	"base_grand_total",
	"currency",
	"status",
)
BUSINESS_DAYS = ("posting_date", "transaction_date")
# A write without hooks that moves docstatus so: (before, after) → the action it is.
STATUS_ACTIONS = {(0, 1): "submitted", (1, 2): "cancelled"}
# Documents read at once by stored_documents: two queries (one per table) per this many.
READ_TOGETHER = 500


def emit_document_event(
	doc,
	action: str,
	via: str | None = None,
	extra: dict[str, Any] | None = None,
	before: Any = None,
	unchanged: bool | None = None,
	reject_invalid: bool = True,
) -> dict[str, Any] | None:
	"""Records the event for one action on ``doc`` (plus ``business.transaction`` when due).

	``before`` is what an update compares with when the version Frappe loaded before saving
	is not the right one. An update that changed nothing is recorded when ``unchanged`` says
	so (by default: a db_set always, a save as Fabric Settings say). Without ``reject_invalid``
	an event its schema refuses is kept as Invalid whatever Fabric Settings say (see record).
	Returns the payload recorded, None when nothing was.
	"""
	policy = current_policy()
	payload: dict[str, Any] = {"doc": document_payload(doc)}
	if action in ("updated", "updated_after_submit"):
		if before is None and via:
			before = doc.flags.get("fabric_snapshot")
		changes = document_changes(before or doc.get_doc_before_save(), payload["doc"])
		if unchanged is None:
			unchanged = policy.unchanged_saves or via is not None
		if changes == {} and not unchanged:
			return None
		payload["changes"] = changes
		if via and changes and "docstatus" in changes and doc.meta.is_submittable:
			status = changes["docstatus"]
			action = STATUS_ACTIONS.get((status["old"], status["new"]), action)
	if via:
		payload["via"] = via
	payload.update(extra or {})
	doc.flags.fabric_snapshot = payload["doc"]
	envelopes = [lifecycle_envelope(doc, action, payload, policy.kind_of(doc.doctype))]
	if action in BUSINESS_ACTIONS and policy.business_events and doc.meta.is_submittable:
		envelopes.append(business_envelope(doc, action, payload["doc"]))
	record(envelopes, reject_invalid)
	return payload


def stored_document(doctype: str, name: str, lock: bool = False):
	"""Returns the document as stored now (None when its row is gone), as ``frappe.get_doc``
	reads it; with ``lock``, a locking read (``get_doc(…, for_update=True)``). Read with plain
	queries where Frappe builds the document from its rows alone (see stored_documents)."""
	if loads_as_stored(doctype):
		return _read_together(doctype, [name], lock).get(str(name))
	try:
		with no_messages():
			return frappe.get_doc(doctype, name, for_update=lock or None)
	except frappe.DoesNotExistError:
		return None


def stored_documents(
	doctype: str, names: list, lock: bool = False, copies: dict[str, str] | None = None
) -> dict[str, Document]:
	"""Returns the documents ``names`` as stored now, by name as given, as a string (those gone
	are left out), each as ``stored_document`` reads it; with ``lock``, read as ``get_doc(…,
	for_update=True)`` reads. ``copies`` names the tables to read instead of the DocTypes' own
	(DocType → table: copies of their rows, see sql_deletes.py).

	``get_doc`` reads a document with a query per table, each built by Frappe's query builder
	(and formatted by sqlparse): about 4 ms for an order with one table on a small VM, which a
	raw statement over thousands of documents pays per document. Here each table is one plain
	query per ``READ_TOGETHER`` documents, and each document is built from its rows as
	``Document.load_from_db`` builds it. A DocType that loads its own way (a Single, a virtual
	DocType or table, a controller with its own ``__init__`` or ``load_from_db``) is read with
	``get_doc``, one document at a time.
	"""
	if not loads_as_stored(doctype):
		read = {str(name): stored_document(doctype, name, lock) for name in dict.fromkeys(names)}
		return {name: doc for name, doc in read.items() if doc is not None}
	found: dict[str, Document] = {}
	for start in range(0, len(names), READ_TOGETHER):
		found.update(_read_together(doctype, names[start : start + READ_TOGETHER], lock, copies))
	return found


def _read_together(doctype: str, names: list, lock: bool, copies: dict[str, str] | None = None) -> dict:
	"""Reads the documents ``names`` with one query per table; returns them by name as given."""
	tables = frappe.get_meta(doctype).get_table_fields()
	tables_read = {name: f"tab{name}" for name in (doctype, *(df.options for df in tables))} | (copies or {})
	chunk = list(dict.fromkeys(names))
	rows = _select(f"SELECT * FROM `{tables_read[doctype]}` WHERE `name` IN %(names)s", chunk, lock)
	if not rows:
		return {}
	children: dict[tuple[str, str], list] = {}
	for df in tables:
		query = (
			f"SELECT * FROM `{tables_read[df.options]}` WHERE `parenttype` = %(doctype)s "
			"AND `parentfield` = %(field)s AND `parent` IN %(names)s ORDER BY `parent`, `idx`"
		)
		for row in _select(query, chunk, lock, doctype=doctype, field=df.fieldname):
			children.setdefault((df.fieldname, row.parent), []).append(row)
	by_name = {str(row.name): row for row in rows}
	unmatched = [str(name) for name in chunk if str(name) not in by_name]
	if unmatched:
		# The database compares names as its collation does (without case, accents or trailing
		# spaces, and whatever else the site's collation makes equal): a name given in another
		# form found its row, as get_doc finds it. The database tells which.
		by_name |= {
			given: by_name[stored] for given, stored in _stored_as(tables_read[doctype], unmatched, by_name)
		}
	found = {}
	for name in chunk:  # in the order given (a statement's ORDER BY)
		row = by_name.get(str(name))
		if row is not None:
			found[str(name)] = _built(doctype, row, tables, children, lock)
	return found


def _stored_as(table: str, given: list[str], stored) -> list[tuple[str, str]]:
	"""Returns (name given, name stored) for each of the names ``given`` that ``table``'s own
	collation finds among the names ``stored`` (each compared by the database)."""
	names = " UNION ALL ".join(["SELECT %s AS given"] * len(given))
	pairs = frappe.db.sql(
		unlimited(
			f"SELECT g.given, t.`name` FROM ({names}) g JOIN `{table}` t ON t.`name` = g.given "
			"WHERE t.`name` IN %s"
		),
		(*given, tuple(stored)),
	)
	return [(str(given_name), str(name)) for given_name, name in pairs if str(name) in stored]


def loads_as_stored(doctype: str) -> bool:
	"""Tells whether Frappe builds a ``doctype`` document from its rows and nothing else (known
	for the policy's life: whether a table is virtual is a query each)."""
	return current_policy().remembered(("loads as stored", doctype), lambda: _loads_as_stored_now(doctype))


def _loads_as_stored_now(doctype: str) -> bool:
	meta = frappe.get_meta(doctype)
	if meta.issingle or meta.get("is_virtual"):
		return False
	controller = controller_of(doctype)
	if controller.__init__ is not Document.__init__ or controller.load_from_db is not Document.load_from_db:
		return False
	return not any(is_virtual_doctype(df.options) for df in meta.get_table_fields())


def controller_of(doctype: str) -> type:
	"""Returns ``doctype``'s controller class, or, when its app's code is no longer on the bench
	(removed without being uninstalled: the DocType and its table remain, and Frappe's writes
	without hooks still work on it), Frappe's own class, as for a custom DocType: the event is
	built from the stored rows alone, rather than failing the write it tells of."""
	try:
		return get_controller(doctype)
	except (ImportError, frappe.DoesNotExistError):
		if not frappe.db.exists("DocType", doctype):
			raise
		return NestedSet if frappe.get_meta(doctype).is_tree else Document


def _select(query: str, names: list, lock: bool, **values) -> list:
	# Exempt from the session's max_join_size, as the fabric's read of a raw statement's rows
	# is (core.sql_kinds.unlimited): a server's guard must not cost a document its event.
	query = unlimited(query + (" FOR UPDATE" if lock else ""))
	return frappe.db.sql(query, {"names": names, **values}, as_dict=True)


def _built(doctype: str, row: dict, tables: list, children: dict, lock: bool) -> Document:
	"""Returns the document of ``row`` with its tables' rows, as ``Document.load_from_db``
	builds it after its own queries."""
	controller = controller_of(doctype)
	doc = controller.__new__(controller)
	doc.doctype, doc.name = doctype, None
	doc.flags = frappe._dict(for_update=lock or None, ignore_children=True)
	BaseDocument.__init__(doc, row)
	doc.flags.pop("ignore_children", None)
	for df in tables:
		# A row's parent is text; an autoincrement document's name a number.
		doc.set(df.fieldname, children.get((df.fieldname, str(row.name)), []))
	if hasattr(doc, "__setup__"):
		doc.__setup__()
	return doc


def stored_names(doctype: str, names: list) -> set[str]:
	"""Returns which of ``names`` are stored now, as strings: as given, or in another form the
	database's collation takes as equal (an INSERT of it would hit that row) (a read per
	thousand names)."""
	stored: set[str] = set()
	for start in range(0, len(names), 1000):
		chunk = names[start : start + 1000]
		found = frappe.db.sql(
			unlimited(f"SELECT `name` FROM `tab{doctype}` WHERE `name` IN %s"), (chunk,), pluck=True
		)
		found = {str(name) for name in found}
		given = {str(name) for name in chunk}
		stored |= given & found
		if len(found) > len(given & found):  # rows found by a name given in another form
			others = [name for name in given if name not in found]
			stored.update(name for name, _ in _stored_as(f"tab{doctype}", others, found))
	return stored


@contextmanager
def no_messages():
	"""Keeps Frappe's messages of what runs inside from the response.

	A read the fabric makes for its event that finds nothing raises through ``frappe.throw``,
	which also adds "… not found" to the messages Desk shows as an error dialog: for a write
	or a save that succeeded (a set_value of a name that does not exist changes nothing and
	says nothing), and that a consumer takes as a handler's reason for failing.
	"""
	muted = frappe.flags.mute_messages
	frappe.flags.mute_messages = True
	try:
		yield
	finally:
		frappe.flags.mute_messages = muted


def lifecycle_envelope(doc, action: str, payload: dict[str, Any], kind: str | None):
	"""Returns the envelope of ``<doctype>.<action>``, or of ``system.change`` for a system DocType."""
	if kind == "system":
		system_payload = {"doctype": doc.doctype, "name": doc.name, "action": action, **payload}
		return new_envelope(SYSTEM_CHANGE, doc.doctype, doc.name, action, system_payload)
	return new_envelope(document_event_type(doc.doctype, action), doc.doctype, doc.name, action, payload)


def business_envelope(doc, action: str, doc_payload: dict[str, Any]):
	"""Returns the ``business.transaction`` envelope of a submit or cancel of ``doc``."""
	summary = {
		field: doc_payload.get(field) for field in BUSINESS_FIELDS if doc_payload.get(field) is not None
	}
	for field in BUSINESS_DAYS:
		# Some DocTypes (ERPNext's Asset Movement) keep these as Datetime: the summary gives the day.
		if isinstance(summary.get(field), str):
			summary[field] = summary[field][:10]
	payload = {
		"doctype": doc.doctype,
		"name": str(doc.name),  # autoincrement names are integers
		"docstatus": doc.docstatus,
		**summary,
		"doc": doc_payload,
	}
	return new_envelope(BUSINESS_TRANSACTION, doc.doctype, doc.name, action, payload)
