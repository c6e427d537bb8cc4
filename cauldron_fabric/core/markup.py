"""Text the fabric keeps in columns that Desk renders as HTML."""

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
