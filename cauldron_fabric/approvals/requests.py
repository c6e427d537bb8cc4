"""Creating Approval Requests from ``agent.approval.requested`` (a handler in ``fabric_handlers``).

The event was checked against its schema before this runs, so its payload has every required
key. Approvers that do not exist on this site are left out and named in the timeline; with none
left, Fabric and System Managers decide. When none of its approvers can be assigned (unknown,
disabled, a role nobody holds), the managers are.
"""

from __future__ import annotations

import json

import frappe
from frappe import _
from frappe.utils import convert_utc_to_system_timezone

from cauldron_fabric.approvals.notify import DOCTYPE, add_note, manager_users, notify_approvers
from cauldron_fabric.core.envelope import KEY_LENGTH, Envelope, parse_time
from cauldron_fabric.core.markup import has_markup, plain
from cauldron_fabric.emit.context import keepable

REQUEST_TYPE = "agent.approval.requested"


def create_approval_request(envelope: Envelope, context=None) -> None:
	"""Creates the Approval Request an agent asks for and assigns it to its approvers."""
	payload = envelope.data.payload
	if frappe.db.exists(DOCTYPE, payload["requestId"]):
		note_repeated_request(envelope)
		return  # the first one stands
	rows, missing = approver_rows(payload.get("approvers") or {})
	doc = frappe.get_doc(
		{
			"doctype": DOCTYPE,
			"request_id": payload["requestId"],
			# Texts from outside, which Desk renders as HTML (the form, the request's title in
			# the approvers' notifications and emails): kept with look-alike brackets.
			"agent": plain(payload["agent"]),
			"task": plain(payload["task"]),
			# As sent, where plain() changed them (hidden, never rendered): approval.response
			# gives the agent back the names it matches on.
			"agent_as_sent": as_sent(payload["agent"]),
			"task_as_sent": as_sent(payload["task"]),
			"action_summary": plain(payload["actionSummary"]),
			"reason": plain(payload.get("reason")) or None,
			"payload": json.dumps(payload.get("payload") or {}, indent=1, sort_keys=True),
			"risk": payload["risk"],
			"due_by": system_time(payload["dueBy"]),
			"correlation_id": conversation(envelope),
			"request_event_id": envelope.id,
			# The user the event names (the caller, for events published through the API):
			# never one of the deciders of its own request.
			"requested_by": sender_of(envelope),
			"approvers": rows,
		}
	)
	doc.flags.fabric_approval_path = True
	doc.insert()
	if missing:
		add_note(doc, _("Approvers unknown on this site, left out: {0}").format(", ".join(missing)))
	if not rows:
		add_note(doc, _("No named approver exists here: Fabric Managers decide this request."))
	if not notify_approvers(doc) and notify_approvers(doc, manager_users()):
		# Nobody it names can be told (unknown or disabled users, roles nobody holds): the
		# managers, who may decide any request, are then its deciders and must hear of it, or
		# the request only waits for its expiry.
		add_note(doc, _("None of its approvers can decide it: assigned to the managers."))


def as_sent(text: str) -> str | None:
	"""Returns ``text`` when plain() changes it (it holds ``<`` or ``>``), else None."""
	return text if has_markup(text) else None


def note_repeated_request(envelope: Envelope) -> None:
	"""Notes on the existing request that another sender used its id (the same sender: a retry).

	Request ids are the agents' own, so a second sender can take one first; the request that
	stands is then not the one the later sender meant, and its approvers must be told.
	"""
	rid = envelope.data.payload["requestId"]
	first = frappe.db.get_value(DOCTYPE, rid, ["requested_by", "request_event_id"], as_dict=True)
	sender = sender_of(envelope)
	if first.request_event_id == envelope.id or (first.requested_by or None) == (sender or None):
		frappe.logger("cauldron_fabric").info("approval request %s exists already", rid)
		return
	frappe.logger("cauldron_fabric").warning(
		"approval request %s: a second request from %s (event %s) was ignored", rid, sender, envelope.id
	)
	add_note(
		frappe.get_doc(DOCTYPE, rid),
		_(
			"A second request with this id came from {0} (event {1}) and was ignored: this one, from {2}, stands. Make sure it is the request you expect before deciding."
		).format(sender or _("an unnamed sender"), envelope.id, first.requested_by or _("an unnamed sender")),
	)


def conversation(envelope: Envelope) -> str:
	"""Returns the request's conversation: its correlationId, or its own id when it has none or
	one the site cannot keep (see keepable), which the request's insert would refuse."""
	correlation = envelope.metadata.correlation_id
	return correlation if correlation and keepable(correlation) else envelope.id


def sender_of(envelope: Envelope) -> str | None:
	"""Returns the event's user as the request keeps it: plain (see plain), as Frappe's save would
	rewrite markup and the sender's next request would no longer be recognised as its own, and cut
	to the column, whose insert refuses a longer one. A site's users have neither < nor > nor
	more than 140 characters in their names, so the four-eyes rule is unchanged."""
	return plain(envelope.metadata.user_id)[:KEY_LENGTH] or None


def approver_rows(approvers: dict) -> tuple[list[dict], list[str]]:
	"""Returns the approver rows for the roles and users that exist, and the names that do not."""
	rows, missing = [], []
	for kind, doctype in (("roles", "Role"), ("users", "User")):
		for name in approvers.get(kind) or []:
			if frappe.db.exists(doctype, name):
				rows.append({"approver_type": doctype, "approver": name})
			else:
				missing.append(f"{doctype} {name}")
	return rows, missing


def system_time(value: str):
	"""Converts an RFC 3339 time to the site's time zone, as Frappe stores datetimes."""
	return convert_utc_to_system_timezone(parse_time(value)).replace(tzinfo=None)
