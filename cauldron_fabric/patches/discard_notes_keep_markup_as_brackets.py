"""Dead Letters discarded before notes were kept plain: their note's markup becomes look-alike brackets.

Discard writes its note with db_set, past Frappe's sanitizing, into a field the letter's form
renders as HTML; new notes are kept plain (see DeadLetter.discard), and a note stored before
would still run as markup in the browser of whoever opens the letter.
"""

from cauldron_fabric.patches import keep_markup_as_brackets


def execute() -> None:
	keep_markup_as_brackets("tabDead Letter", "resolution_note")
