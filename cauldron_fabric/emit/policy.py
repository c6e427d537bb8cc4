"""What gets emitted: Fabric Settings turned into a frozen policy, cached per request.

The policy is read on every document save, so it is built once per request (or job) from the
cached settings document and dropped when Fabric Settings change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import frappe
from frappe.utils import cint

MODULE = "Cauldron Fabric"
APP = "cauldron_fabric"

# Noise no integration wants: logs, versions, queues, caches, scheduler bookkeeping.
DEFAULT_DENIED = frozenset(
	{
		"Access Log",
		"Activity Log",
		"Console Log",
		"Data Import Log",
		"Deleted Document",
		"Email Queue",
		"Email Queue Recipient",
		"Energy Point Log",
		"Error Log",
		"Error Snapshot",
		"Integration Request",
		"Notification Log",
		# Credentials by design: an OAuth token's name is the token itself.
		"OAuth Authorization Code",
		"OAuth Bearer Token",
		"Prepared Report",
		"Route History",
		"RQ Job",
		"RQ Worker",
		"Scheduled Job Log",
		"Scheduled Job Type",
		"Sessions",
		"Submission Queue",
		"Token Cache",
		"Transaction Log",
		"Unhandled Email",
		"Version",
		"View Log",
		"Webhook Request Log",
	}
)

# Configuration rather than business data: these emit ``system.change``.
SYSTEM_DOCTYPES = frozenset(
	{
		"Client Script",
		"Custom DocPerm",
		"Custom Role",
		"Custom Field",
		"DocPerm",
		"DocShare",
		"DocType",
		"Document Naming Rule",
		"Module Def",
		"Module Profile",
		"Notification",
		"Print Format",
		"Property Setter",
		"Report",
		"Role",
		"Role Profile",
		"Server Script",
		"User Permission",
		"User Type",
		"Webhook",
		"Workflow",
	}
)

Kind = Literal["document", "system"]
BUSINESS = "business"

# Which writes without document hooks are events: set_value by these, db_update unless None
# (Fabric Settings → Writes without document hooks, see emit/set_values.py).
SET_VALUES_THAT_UPDATE_MODIFIED = "Writes that update modified"
SET_VALUES_ALL = "Every write"
SET_VALUES_NONE = "None"
# The ``via`` of their events.
SET_VALUE = "set_value"
DB_UPDATE = "db_update"
SQL = "sql"


@dataclass(frozen=True)
class EmitPolicy:
	"""Which events to record, and whether recorded events are to be published."""

	enabled: bool = True
	publishing: bool = False
	source: str = ""
	document_events: bool = True
	business_events: bool = True
	user_events: bool = True
	system_events: bool = True
	heartbeat: bool = True
	unchanged_saves: bool = False
	set_values: str = SET_VALUES_THAT_UPDATE_MODIFIED
	allowed: frozenset[str] = frozenset()
	denied: frozenset[str] = frozenset()
	_kinds: dict = field(default_factory=dict, init=False, compare=False, repr=False)

	def kind_of(self, doctype: str) -> Kind | None:
		"""Returns how a DocType's changes are emitted: as document events, system changes, or not."""
		if doctype not in self._kinds:
			self._kinds[doctype] = self._classify(doctype)
		return self._kinds[doctype]

	def remembered(self, key: tuple, compute: Callable[[], Any]) -> Any:
		"""Returns ``compute()``, computed once for this policy's life (a request or job) per
		``key``, as kind_of's answers are."""
		if key not in self._kinds:
			self._kinds[key] = compute()
		return self._kinds[key]

	def emits_business_transactions(self, doctype: str) -> bool:
		"""Tells whether a DocType's submits and cancels are ``business.transaction`` events, with
		or without its lifecycle events."""
		key = (doctype, BUSINESS)
		if key not in self._kinds:
			self._kinds[key] = self._kind(doctype) == "document"
		return self.business_events and self._kinds[key]

	def _classify(self, doctype: str) -> Kind | None:
		kind = self._kind(doctype)
		if kind == "system":
			return kind if self.system_events else None
		return kind if self.document_events else None

	def _kind(self, doctype: str) -> Kind | None:
		"""Returns what a DocType's changes are, whatever the switches of their kinds say."""
		if not self.enabled or doctype in DEFAULT_DENIED or doctype in self.denied:
			return None
		meta = frappe.get_meta(doctype)
		if meta.istable or meta.get("is_virtual") or is_fabric_doctype(meta):
			return None
		if meta.issingle or doctype in SYSTEM_DOCTYPES:
			return "system"
		if self.allowed and doctype not in self.allowed:
			return None
		return "document"


def is_fabric_doctype(meta) -> bool:
	"""Tells whether a DocType is one of the fabric's own: shipped in its module, not a custom
	DocType an admin created there."""
	return meta.module == MODULE and not meta.get("custom")


# Sites whose Event Log table this process has seen. Once created the table stays: only
# uninstalling the app drops it, and that takes the app's hooks, which read the policy, with it.
_SITES_WITH_OUTBOX: set[str] = set()


# Set (in frappe.flags, for this request or command) while the app is being uninstalled.
LEAVING = "fabric_leaving_site"


def has_outbox() -> bool:
	"""Tells whether the site's Event Log table exists (not yet while the app is being installed).

	Asked once per request: Frappe's answer reads the list of all the site's tables from Redis,
	so a table seen once is remembered for the process.
	"""
	site = frappe.local.site
	if site in _SITES_WITH_OUTBOX:
		return True
	if frappe.db.table_exists("Event Log"):
		_SITES_WITH_OUTBOX.add(site)
		return True
	return False


def load_policy() -> EmitPolicy:
	"""Builds the policy from Fabric Settings; a site without the app's tables emits nothing.

	Nor does a site the app is not installed on: the wraps of Frappe's writes (``held.py``,
	``set_values.py``) stay in a process after ``bench uninstall-app`` took the app, its tables
	and Fabric Settings from a site, which ``has_outbox`` remembers as having them. Nor does a
	site the app is being uninstalled from (``leave_site``): Frappe deletes the app's DocTypes
	one by one, each deletion a change the fabric would record into tables already gone, or
	read its settings from a DocType already gone.
	"""
	if frappe.flags.get(LEAVING) or not has_outbox() or APP not in frappe.get_installed_apps():
		return EmitPolicy(enabled=False)
	settings = frappe.get_cached_doc("Fabric Settings")
	return EmitPolicy(
		enabled=bool(cint(settings.enabled)),
		publishing=bool((settings.bootstrap_servers or "").strip() or (settings.rabbitmq_url or "").strip()),
		source=(settings.event_source or "").strip() or f"frappe://{frappe.local.site}",
		document_events=bool(cint(settings.emit_document_events)),
		business_events=bool(cint(settings.emit_business_events)),
		user_events=bool(cint(settings.emit_user_events)),
		system_events=bool(cint(settings.emit_system_events)),
		heartbeat=bool(cint(settings.emit_heartbeat)),
		unchanged_saves=bool(cint(settings.emit_unchanged_saves)),
		set_values=settings.get("capture_set_value") or SET_VALUES_THAT_UPDATE_MODIFIED,
		allowed=frozenset(row.document_type for row in settings.allowed_doctypes or []),
		denied=frozenset(row.document_type for row in settings.denied_doctypes or []),
	)


def leave_site() -> None:
	"""Turns the fabric off for the rest of this uninstall of the app (its before_uninstall hook).

	Frappe's ``uninstall-app`` runs the app's document hooks until the app is out of the site's
	installed apps, after deleting its DocTypes: the Event Log and Fabric Settings among them.
	"""
	frappe.flags[LEAVING] = True
	clear_policy()


def current_policy() -> EmitPolicy:
	"""Returns the policy of this request or job, building it on first use."""
	policy = getattr(frappe.local, "fabric_policy", None)
	if policy is None:
		policy = frappe.local.fabric_policy = load_policy()
	return policy


def clear_policy() -> None:
	"""Drops the cached policy so the next event reads Fabric Settings afresh."""
	frappe.local.fabric_policy = None
