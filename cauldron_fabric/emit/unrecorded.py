"""Writes the fabric records no event for, or records another way than it would like (a
statement it cannot read, a copy the database refuses): each told once per process in the
``cauldron_fabric`` log, with what to do about it."""

from __future__ import annotations

import frappe

# The keys (statement starts, "<what> <DocType>") already logged by this process.
LOGGED: set[str] = set()


def log_once(key: str, message: str, *args) -> None:
	"""Logs the warning ``message`` (%-formatted with ``args``), once per process and ``key``."""
	if key not in LOGGED:
		LOGGED.add(key)
		frappe.logger("cauldron_fabric").warning(message, *args)
