"""Dead Letters discarded before notes were kept plain: their note's markup becomes look-alike brackets.

Discard writes its note with db_set, past Frappe's sanitizing, into a field the letter's form
renders as HTML; new notes are kept plain (see DeadLetter.discard), and a note stored before
would still run as markup in the browser of whoever opens the letter. Each bracket becomes the
character plain() writes, so the text reads the same; ``modified`` is left as it was.
"""

import frappe

from cauldron_fabric.core.markup import plain


def execute() -> None:
	opening, closing = plain("<"), plain(">")
	frappe.db.sql(
		"""UPDATE `tabDead Letter`
		SET resolution_note = REPLACE(REPLACE(resolution_note, '<', %s), '>', %s)
		WHERE resolution_note LIKE '%%<%%' OR resolution_note LIKE '%%>%%'""",
		(opening, closing),
	)
