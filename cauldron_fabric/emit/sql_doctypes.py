"""Which tables a raw SQL statement names are DocTypes whose writes the fabric records
(sql_writes.py): a table ``tab<Name>`` is watched when ``<Name>`` is a DocType whose changes the
policy emits (or a child table), and not one of the fabric's own.

Names that are no DocType are remembered per process and site, and forgotten when any process
inserts a DocType (a mark in Redis): a patch may name a table before the sync creates it.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.policy import DEFAULT_DENIED, clear_policy, current_policy, is_fabric_doctype

# Tables named tab… that hold no document events: no DocType's (naming series counters, Singles'
# values, login secrets, search index) or Frappe's defaults (a DocType, written as settings).
NOT_DOCTYPES = frozenset({"Series", "Singles", "DefaultValue", "__Auth", "__global_search"})

# Per site, the names after ``tab`` that turned out to be no DocType (a query each, once), and
# the site's mark of DocTypes inserted (in Redis) when this process started noting them.
_not_doctypes: dict[str, tuple[bytes | None, set[str]]] = {}
# Changed in Redis whenever a DocType is inserted on the site, by any process.
DOCTYPES_INSERTED = "cauldron_fabric:doctypes_inserted"


def doctype_of(table: str) -> str | None:
	"""Returns the DocType whose table is ``table`` (``tab`` + its name), or None."""
	return table[3:] if table.startswith("tab") else None


def is_watched(doctype: str) -> bool:
	"""Tells whether writes to ``doctype``'s table may be events: it is a DocType, the fabric's
	policy emits its changes (or its parent's, for a child table), and it is not the fabric's.
	Known for the policy's life (a request or job): the fabric records into its own tables with
	SQL too, once per event."""
	return current_policy().remembered(("sql", doctype), lambda: _watched_now(doctype))


def _watched_now(doctype: str) -> bool:
	if doctype in NOT_DOCTYPES or doctype in DEFAULT_DENIED:
		return False
	missing = _missing_doctypes(doctype)
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


def _missing_doctypes(doctype: str) -> set[str]:
	"""Returns the names this process found to be no DocType on the site, forgotten first when
	``doctype`` is one of them and another process has inserted a DocType since (a Redis read,
	at most once per request or job and name: is_watched keeps the answer)."""
	site = frappe.local.site
	noted = _not_doctypes.get(site)
	if noted is None or doctype in noted[1]:
		mark = _doctypes_inserted()
		if noted is None or mark != noted[0]:
			noted = _not_doctypes[site] = (mark, set())
	return noted[1]


def _doctypes_inserted() -> bytes | None:
	# Straight from Redis: get_value keeps what it read for the rest of the request.
	return frappe.cache.get(frappe.cache.make_key(DOCTYPES_INSERTED))


def forget_missing_doctypes(doc, method=None) -> None:
	"""Forgets which names after ``tab`` were no DocType, once a DocType is inserted (DocType
	after_insert): a migrate's patch may name a table before the sync creates its DocType, and
	later patches, or workers running through the migrate, write it. This process forgets at
	once (its policy, which keeps _watched's answers for its life, is built afresh too); the
	others at their next statement naming such a table, by the mark changed in Redis."""
	_not_doctypes.pop(frappe.local.site, None)
	frappe.cache.set(frappe.cache.make_key(DOCTYPES_INSERTED), frappe.generate_hash(length=12))
	clear_policy()
