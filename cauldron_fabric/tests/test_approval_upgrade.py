"""Approval texts stored before the upgrade, on a real site: what the migrate's patch rewrites."""

from __future__ import annotations

import frappe

from cauldron_fabric.patches import approval_texts_keep_markup_as_brackets as patch
from cauldron_fabric.tests.test_approval_support import APPROVER, ApprovalCase, approval_requested, receive
from cauldron_fabric.tests.utils import listed_patches

MARKUP = 'Pay <a href="https://pay.evil.test">here</a> if a > b'
KEPT = 'Pay \u2039a href="https://pay.evil.test"\u203ahere\u2039/a\u203a if a \u203a b'
# The request's fields that quote its sender.
TEXTS = ["agent", "task", "action_summary", "reason"]
PERSONS_COMMENT = '<div class="ql-editor read-mode"><p>Looks <strong>fine</strong></p></div>'


def stored(doctype: str, name: str, field: str) -> tuple:
	"""Returns a row's ``field`` and its ``modified``."""
	return tuple(frappe.db.get_value(doctype, name, [field, "modified"]))


class TestApprovalTextsStoredBefore(ApprovalCase):
	def test_markup_stored_before_the_upgrade_is_kept_as_text_and_peoples_own_is_left(self):
		# Before the fix, an outside caller's summary and reason, the approvers' ToDos quoting it
		# and the timeline's notes were stored with markup Desk renders (links, images).
		name = receive(approval_requested(users=(APPROVER,), roles=()))
		request = frappe.get_doc("Approval Request", name)
		frappe.db.set_value("Approval Request", name, dict.fromkeys(TEXTS, MARKUP), update_modified=False)
		(todo,) = frappe.get_all("ToDo", filters={"reference_name": name}, pluck="name")
		frappe.db.set_value(
			"ToDo", todo, "description", f"Approve or reject: {MARKUP}", update_modified=False
		)
		note = request.add_comment("Info", "Approved")
		frappe.db.set_value(
			"Comment", note.name, "content", f"Approved by x: {MARKUP}", update_modified=False
		)
		own = request.add_comment("Comment", PERSONS_COMMENT)
		other = frappe.get_doc({"doctype": "ToDo", "description": "<p>Call <b>ACME</b></p>"}).insert()
		untouched = [
			stored("Comment", own.name, "content"),
			stored("ToDo", other.name, "description"),
		]
		rewritten = (("Approval Request", name), ("ToDo", todo), ("Comment", note.name))
		modified = [frappe.db.get_value(doctype, row, "modified") for doctype, row in rewritten]
		patch.execute()
		patch.execute()  # a second migrate finds nothing to change
		self.assertEqual(frappe.db.get_value("Approval Request", name, TEXTS), tuple(KEPT for _ in TEXTS))
		self.assertEqual(frappe.db.get_value("ToDo", todo, "description"), f"Approve or reject: {KEPT}")
		self.assertEqual(frappe.db.get_value("Comment", note.name, "content"), f"Approved by x: {KEPT}")
		self.assertEqual(
			[frappe.db.get_value(doctype, row, "modified") for doctype, row in rewritten], modified
		)
		self.assertEqual(
			[stored("Comment", own.name, "content"), stored("ToDo", other.name, "description")],
			untouched,
			"a person's comment and a ToDo of no approval request keep their markup",
		)
		self.assertIn(patch.__name__, listed_patches())
