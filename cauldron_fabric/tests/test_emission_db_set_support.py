"""What the db_set test modules share: the controller hooks they install on the test order, and
reading an event's document."""

from __future__ import annotations

import frappe

CREATED = "fabric_test_order.created"
UPDATED = "fabric_test_order.updated"


# The module the tests name to order_hooks: Frappe finds each hook by its dotted path.
HOOKS = __name__


def note_from_hook(doc, method=None) -> None:
	"""A controller hook that db_sets the order's note, naming the hook that did it."""
	doc.db_set("note", f"set in {method}")


def note_from_another_copy(doc, method=None) -> None:
	"""A controller hook that db_sets the note through a freshly loaded copy of the order."""
	frappe.get_doc(doc.doctype, doc.name).db_set("note", "set on a copy")


def note_and_save(doc, method=None) -> None:
	"""A controller hook that sets the order's note and saves the order again."""
	doc.note = f"saved in {method}"
	doc.save()


def note_and_save_a_copy(doc, method=None) -> None:
	"""A controller hook that loads the order anew, sets its note and saves that copy."""
	copy = frappe.get_doc(doc.doctype, doc.name)
	copy.note = f"saved on a copy in {method}"
	copy.save()


def submit_in_hook(doc, method=None) -> None:
	"""A controller hook that submits the order."""
	doc.submit()


def refuse(doc, method=None) -> None:
	"""A validate hook that makes the save fail."""
	frappe.throw("refused by the test")


def note_of(envelope: dict) -> str | None:
	"""Returns the note of the order an event carries."""
	return envelope["data"]["payload"]["doc"]["note"]


def note_then_commit(doc, method=None) -> None:
	"""A hook that db_sets the note and commits, as some Frappe and ERPNext code does mid-save."""
	doc.db_set("note", f"set in {method}")
	frappe.db.commit()


def note_on_another_copy_then_commit(doc, method=None) -> None:
	"""A hook that db_sets the note through a freshly loaded copy of the order, then commits."""
	note_from_another_copy(doc, method)
	frappe.db.commit()


def doc_of(envelope: dict) -> dict:
	"""Returns the document an event carries."""
	return envelope["data"]["payload"]["doc"]
