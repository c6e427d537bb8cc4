"""In-app handlers as delivery destinations: the functions apps register in their hooks.

An app lists handlers by event type pattern in its ``hooks.py``::

    fabric_handlers = {"sales_invoice.*": ["my_app.integrations.on_invoice"]}

A subscription whose destination is ``handler:my_app.integrations.on_invoice`` calls it as
``on_invoice(envelope, payload)`` (the core ``Envelope`` and the rendered payload). Only
registered paths can be chosen, so a subscription can never call arbitrary code. The worker
runs handlers on its sending threads: each thread gets its own site connection, runs the
handler as the Fabric Settings handler user (or Administrator) and commits after it, or rolls
back when it raises (a FabricError says whether to retry; any other error is retried).
A handler has no timeout, since a thread cannot be stopped without leaving its transaction half
done; the engine logs one that runs past Fabric Settings' Handlers overdue after (overdue.py).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable

import frappe

from cauldron_fabric.core.delivery.transform import RenderedPayload
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.delivery.subscriptions import registered_handlers
from cauldron_fabric.emit.context import caused_by
from cauldron_fabric.emit.policy import clear_policy


def handler_functions(site: str, user: str) -> dict[str, Callable[[Envelope, RenderedPayload], None]]:
	"""Returns a callable per registered handler path, each running inside a site context as ``user``."""
	sites_path = frappe.local.sites_path
	return {path: SiteHandler(site, sites_path, path, user) for path in registered_handlers()}


class SiteHandler:
	"""Calls one registered handler in a connected site context of the calling thread."""

	def __init__(self, site: str, sites_path: str, path: str, user: str):
		self.site, self.sites_path, self.path, self.user = site, sites_path, path, user

	def __call__(self, envelope: Envelope, payload: RenderedPayload) -> None:
		_connect(self.site, self.sites_path)
		_start_afresh()
		frappe.set_user(self.user)
		function = frappe.get_attr(self.path)
		try:
			with caused_by(envelope.id, envelope.metadata.correlation_id):
				function(envelope, payload)
				# What the commit records (rows changed alone, caught db_sets) is the handler's too.
				frappe.db.commit()
		except BaseException:
			frappe.db.rollback()
			raise


_opened: list = []  # the sending threads' database connections, closed with the engine
_opened_lock = threading.Lock()


def _connect(site: str, sites_path: str) -> None:
	"""Initialises and connects the site in this thread, once per thread."""
	if getattr(frappe.local, "site", None) == site and getattr(frappe.local, "db", None) is not None:
		return
	frappe.init(site=site, sites_path=sites_path)
	frappe.connect()
	with _opened_lock:
		_opened.append(frappe.local.db)


def _start_afresh() -> None:
	"""Forgets what this thread kept from earlier events, as each new request or job does.

	The sending threads outlive any request: without this, Fabric Settings saved since a
	thread's first event (a deny list, emission turned off) never reach the events its
	handlers' changes emit, until the worker restarts; flags a handler set (``mute_emails``,
	``in_import``) hold for the next one; every message printed or thrown is kept for good; and
	a correlation id made outside a handler's block (by an event recorded at its commit) would
	put every later handler's changes, and the jobs they queue, in that one conversation.
	"""
	frappe.local.fabric_correlation_id = frappe.local.fabric_causation_id = None
	if (initial := getattr(frappe.local, "fabric_initial_flags", None)) is None:  # as connected
		initial = frappe.local.fabric_initial_flags = copy.deepcopy(dict(frappe.local.flags))
	frappe.local.cache = {}
	frappe.local.flags = frappe._dict(copy.deepcopy(initial))
	frappe.local.message_log, frappe.local.error_log, frappe.local.debug_log = [], [], []
	frappe.local.locked_documents = []
	clear_policy()


def close_handler_connections() -> None:
	"""Closes the connections handlers opened (call once their threads have stopped)."""
	with _opened_lock:
		connections, _opened[:] = list(_opened), []
	for db in connections:
		try:
			db.close()
		except Exception:
			pass
