"""Deciding approval requests, and telling the agent: ``approval.response`` through the outbox.

A decision and its event are one transaction: the response is published (by the relay) only if
the decision commits. The response carries the request's correlation id and has the request
event as its cause, so the agent can match it to the request it made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import frappe
import pytz
from frappe import _
from frappe.utils import get_datetime, get_system_timezone, now_datetime

from cauldron_fabric.approvals.notify import DOCTYPE, add_note, can_decide, close_assignments
from cauldron_fabric.approvals.permissions import visible_request
from cauldron_fabric.core.envelope import Envelope, format_time, utc_now_iso
from cauldron_fabric.emit.context import caused_by
from cauldron_fabric.emit.recorder import new_envelope, record

RESPONSE_TYPE = "approval.response"
APPROVED, REJECTED = "approved", "rejected"
OPEN = ("Pending", "Escalated")
STATUS_OF = {APPROVED: "Approved", REJECTED: "Rejected"}
# The longest comment a decision keeps: approval.response's schema allows no more.
COMMENT_LENGTH = 5000


def load_for_decision(name: str):
	"""Returns the request locked for update; raises PermissionError unless the user may decide it."""
	doc = visible_request(name, for_update=True)
	if not can_decide(doc, frappe.session.user):
		_not_an_approver()
	return doc


def _not_an_approver() -> None:
	frappe.throw(
		_("Only the approvers this request names, or a Fabric Manager, may decide it."),
		frappe.PermissionError,
		title=_("Not an approver"),
	)


def is_overdue(doc) -> bool:
	"""Tells whether a pending request is past its due time."""
	return doc.status == "Pending" and bool(doc.due_by) and get_datetime(doc.due_by) <= now_datetime()


def decide(name: str, decision: str, comment: str | None = None):
	"""Records an approver's decision and queues ``approval.response``; returns the request."""
	if decision not in STATUS_OF:
		frappe.throw(_("A decision is 'approved' or 'rejected', not {0}.").format(decision))
	comment = (comment or "").strip() or None
	if comment and len(comment) > COMMENT_LENGTH:
		# Checked first: the response event's schema would refuse it later, telling the approver
		# to ask an admin to register a schema version.
		frappe.throw(
			_("The comment is {0} characters long; a decision keeps at most {1}. Shorten it.").format(
				len(comment), COMMENT_LENGTH
			),
			title=_("Comment too long"),
		)
	doc = load_for_decision(name)
	if is_overdue(doc):
		from cauldron_fabric.approvals.expiry import expire_request

		expire_request(doc)
		if doc.status not in OPEN:
			frappe.db.commit()  # the expiry stands even though this decision came too late
	if doc.status not in OPEN:
		frappe.throw(
			_("This request is already {0} ({1}); it cannot be decided again.").format(
				_(doc.status), doc.decided_by or _("on expiry")
			),
			title=_("Already decided"),
		)
	doc.update(
		{"status": STATUS_OF[decision], "decided_by": frappe.session.user, "decided_at": now_datetime()}
	)
	doc.decision_comment = comment
	doc.response_event_id = publish_response(doc, decision, comment, frappe.session.user).id
	# Approvers need no write permission (can_decide was checked); a decision is always versioned.
	doc.flags.fabric_approval_path = True
	doc.save(ignore_permissions=True, ignore_version=False)
	add_note(
		doc,
		_("{0} by {1}{2}").format(_(doc.status), frappe.session.user, f": {comment}" if comment else ""),
	)
	close_assignments(doc)
	return doc


@contextmanager
def conversation_of(doc) -> Iterator[None]:
	"""Puts the events emitted inside into the request's conversation, caused by its event."""
	if doc.request_event_id:
		with caused_by(doc.request_event_id, doc.correlation_id):
			yield
	else:
		yield


def publish_response(doc, decision: str, comment: str | None, decided_by: str) -> Envelope:
	"""Records ``approval.response`` for the request in the current transaction; returns it."""
	payload: dict[str, Any] = {
		"requestId": doc.request_id,
		"decision": decision,
		"comment": comment,
		"decidedBy": decided_by,
		"decidedAt": utc_now_iso(),
	}
	# The agent's own names, as it sent them (kept plain on the form where they hold < or >).
	payload.update(
		{
			key: doc.get(f"{field}_as_sent") or doc.get(field)
			for key, field in (("agent", "agent"), ("task", "task"))
			if doc.get(field)
		}
	)
	with conversation_of(doc):
		envelope = new_envelope(RESPONSE_TYPE, DOCTYPE, doc.name, decision, payload)
		record([envelope])
	return envelope


def utc_time(value) -> str | None:
	"""Formats a stored datetime (the site's wall-clock time, as Frappe keeps it) as RFC 3339 UTC.

	The agent sends dueBy and reads decidedAt in UTC ``Z`` time; the site's naive local time
	would read as UTC to it, hours off in any other zone.
	"""
	if not value:
		return None
	local = pytz.timezone(get_system_timezone()).localize(get_datetime(value))
	return format_time(local)


def summary(doc, user: str | None = None) -> dict[str, Any]:
	"""Returns a request as plain data for the API."""
	return {
		"name": doc.name,
		"requestId": doc.request_id,
		"status": doc.status,
		"agent": doc.agent,
		"task": doc.task,
		"actionSummary": doc.action_summary,
		"risk": doc.risk,
		"dueBy": utc_time(doc.due_by),
		"approvers": [{"type": row.approver_type, "approver": row.approver} for row in doc.approvers or []],
		"decidedBy": doc.decided_by,
		"decidedAt": utc_time(doc.decided_at),
		"comment": doc.decision_comment,
		"correlationId": doc.correlation_id,
		"responseEventId": doc.response_event_id,
		"canDecide": doc.status in OPEN and can_decide(doc, user or frappe.session.user),
	}
