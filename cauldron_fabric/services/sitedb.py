"""The site's own database connection (``frappe.db``) in long-running processes.

A relay, consumer or delivery worker outlives any request, so its ``frappe.db`` can be cut
under it (a failover, a MariaDB restart, wait_timeout). These replace it instead of letting
the process die: an outage delays work, it never stops it.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.core.sqlsession import is_connection_error


def affected_rows() -> int:
	"""Returns how many rows the last statement on the site's connection changed (ROW_COUNT())."""
	return int(frappe.db.sql("SELECT ROW_COUNT()")[0][0])


def reconnect() -> None:
	"""Replaces the site's database connection; raises when the database cannot be reached."""
	try:
		frappe.db.close()
	except Exception:
		pass  # gone already
	frappe.connect(set_admin_as_user=False)


def safe_rollback() -> None:
	"""Rolls back; a connection that is gone is replaced (tried again at the next use when down)."""
	try:
		frappe.db.rollback()
	except Exception as exc:
		if not is_connection_error(exc):
			raise
		try:
			reconnect()
		except Exception as again:
			frappe.logger("cauldron_fabric").warning("the site's database is unreachable: %s", again)


def recovered_from_lost_connection(exc: BaseException) -> bool:
	"""Tells whether ``exc`` is the site's connection lost; if so logs it and replaces the
	connection (or leaves that for the next use while the database is down).

	For the loops of long-running processes: ``except Exception as exc: if not
	recovered_from_lost_connection(exc): raise``, then wait and go on.
	"""
	if not is_connection_error(exc):
		return False
	frappe.logger("cauldron_fabric").warning("lost the site's database, retrying: %s", exc)
	safe_rollback()
	return True
