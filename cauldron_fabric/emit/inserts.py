"""The inserts under way in this request or job, noted by the fabric itself.

A hook of an insert (after_insert, on_update) may load the document anew and save or db_set
the copy: that changes a document whose created event is still to come. Frappe's own list,
``currently_saving``, cannot tell: it notes an insert before naming it and never removes the
entry under None, so in a long job (a data import, a patch, a worker) it grows with every
insert. The fabric notes each insert as it begins (before_insert) and forgets it at the next
one once it has ended: the list holds the inserts running now, plus those that raised since.
``being_saved`` adds Frappe's own marks to tell whether a document is being saved at all.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.frames import caller_of, callers_of

INSERTS = "fabric_inserts_under_way"
# A document's own save and insert, as they appear on the stack.
SAVE_CALLS = ("_save", "insert")


def note_insert(doc, method=None) -> None:
	"""Notes that ``doc``'s insert has begun (before_insert)."""
	inserts = getattr(frappe.local, INSERTS, None)
	if inserts is None:
		inserts = []
		setattr(frappe.local, INSERTS, inserts)
	elif inserts:
		_forget_ended(inserts)
	if not any(other is doc for other in inserts):
		inserts.append(doc)


def _forget_ended(inserts: list) -> None:
	"""Drops from ``inserts`` those that ended: Frappe deletes ``__islocal`` at the end of an
	insert, and one that raised is no longer on the stack."""
	inserts[:] = [other for other in inserts if other.get("__islocal") is not None]
	if inserts:
		running = callers_of("insert")
		inserts[:] = [other for other in inserts if any(other is owner for owner in running)]


def inserted_through_another_object(doc) -> bool:
	"""Tells whether another object of ``doc``'s document is inside its insert, its row written.

	An insert that raised after writing its row keeps its note until the next insert: only one
	still on the stack counts, so the stack is read when a note matches, not on every save.
	"""
	name = str(doc.name)
	for other in getattr(frappe.local, INSERTS, None) or ():
		if (
			other is not doc
			and other.doctype == doc.doctype
			and other.get("__islocal") is False
			and str(other.name) == name
			and caller_of("insert", lambda owner, other=other: owner is other) is not None
		):
			return True
	return False


def being_saved(doc) -> bool:
	"""Tells whether ``doc`` is inside its own insert or save, or is a copy of a document inside
	its insert."""
	# insert() sets __islocal, db_insert() makes it False (so is_new() is false in after_insert
	# and on_update) and insert() deletes it at the end. currently_saving misses inserts: Frappe
	# adds the document there before it has a name.
	is_local = doc.get("__islocal")
	if is_local or is_local is False:
		return True
	if (doc.doctype, doc.name) in (frappe.flags.currently_saving or ()):
		return True
	return inserted_through_another_object(doc)


def save_running(doctype: str, name) -> bool:
	"""Tells whether a save or insert of the document ``doctype`` ``name`` is running now.

	Frappe leaves a save that raised in ``currently_saving``, where ``being_saved`` finds it: a
	write after such a save, which a caller caught, comes from no save's hooks. Held for that
	save's event, it would wait for the document's next save, whose event starts from the row
	as written and would not tell it. It walks the stack: asked after ``being_saved`` found the
	document (see ``saved_now``), or once per held write at commit.
	"""
	name = str(name)

	def is_this_document(owner) -> bool:
		return getattr(owner, "doctype", None) == doctype and str(getattr(owner, "name", None)) == name

	return any(caller_of(method, is_this_document) is not None for method in SAVE_CALLS)


def saved_now(doc) -> bool:
	"""Tells whether ``doc`` is being saved by a save or insert running now, whose event a
	db_set or set_value from its hooks waits for (a save that raised stays in currently_saving:
	a write after it, which its caller caught, is an update of its own)."""
	return being_saved(doc) and save_running(doc.doctype, doc.name)
