"""Text the fabric keeps in columns that Desk renders as HTML.

Desk renders these columns trusting Frappe to have sanitized them on save, and the fabric
writes them by SQL, which that save never sees: a ``<`` or ``>`` there would run as markup in
the browser of whoever opens the row. Text from outside is either refused where it enters
(has_markup: names, ids and attributes, which must stay exact) or kept with look-alike
brackets (plain: errors and reason phrases, which are only read).
"""

from __future__ import annotations


def plain(text: str | None) -> str:
	"""Returns ``text`` (an error, a receiver's reason phrase) with no ``<`` or ``>``.

	Errors are kept as an Event Log's or a delivery's last_error, which Desk's form renders as
	HTML, and they quote what came from outside (a receiver's answer, a broker's error, an
	event's values in a schema violation or a handler's error): such markup would run in the
	browser of the admin who opens the row. Each bracket becomes one look-alike character, so
	the text keeps its length and a limit cut before or after gives the same text.
	"""
	return (text or "").replace("<", "\u2039").replace(">", "\u203a")


def has_markup(text: str) -> bool:
	"""Tells whether ``text`` holds a ``<`` or ``>``, which Frappe refuses in document names too."""
	return "<" in text or ">" in text
