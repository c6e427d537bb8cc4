"""Helpers of the approval and consumer tests: approvers, agent requests, responses, assignments,
and the approval test modules' case."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.approvals.requests import create_approval_request
from cauldron_fabric.core.envelope import Envelope, format_time
from cauldron_fabric.emit.context import caused_by
from cauldron_fabric.testing.events import document_event

APPROVER_ROLE = "Fabric Test Approver"
ESCALATION_ROLE = "Fabric Test Escalation"
APPROVER = "approver@fabric.test"
ROLE_HOLDER = "role.holder@fabric.test"
ESCALATION_HOLDER = "escalation@fabric.test"
OUTSIDER = "outsider@fabric.test"
MANAGER = "manager@fabric.test"
# Frappe refuses to delete a user while no other System Manager than Administrator exists: the
# tests that delete the users they make need one, as any real site has.
SYSTEM_MANAGER = "system.manager@fabric.test"
NOBODYS_ROLE = "Fabric Test Nobody Holds"
PAST = -dt.timedelta(minutes=5)


def ensure_role(role: str) -> None:
	"""Creates a desk role once."""
	if not frappe.db.exists("Role", role):
		frappe.get_doc({"doctype": "Role", "role_name": role, "desk_access": 1}).insert(
			ignore_permissions=True
		)


def ensure_user(email: str, roles: list[str]) -> None:
	"""Creates an enabled system user with ``roles`` once."""
	if frappe.db.exists("User", email):
		return
	frappe.get_doc(
		{
			"doctype": "User",
			"email": email,
			"first_name": email.split("@")[0],
			"send_welcome_email": 0,
			"user_type": "System User",
			"roles": [{"role": role} for role in roles],
		}
	).insert(ignore_permissions=True)


def ensure_people() -> None:
	"""Creates the test roles and users (committed)."""
	for role in (APPROVER_ROLE, ESCALATION_ROLE):
		ensure_role(role)
	ensure_user(APPROVER, ["Blogger"])
	ensure_user(ROLE_HOLDER, [APPROVER_ROLE])
	ensure_user(ESCALATION_HOLDER, [ESCALATION_ROLE])
	ensure_user(OUTSIDER, ["Blogger"])
	ensure_user(MANAGER, ["Fabric Manager"])
	ensure_user(SYSTEM_MANAGER, ["System Manager"])
	frappe.db.commit()


def request_id() -> str:
	"""Returns a fresh agent request id."""
	return "APR-TEST-" + frappe.generate_hash(length=8).upper()


def approval_requested(
	rid: str | None = None,
	users: tuple[str, ...] = (APPROVER,),
	roles: tuple[str, ...] = (APPROVER_ROLE,),
	due_in: dt.timedelta = dt.timedelta(hours=4),
	correlation_id: str | None = None,
	**payload: Any,
) -> Envelope:
	"""Builds the agent.approval.requested event an agent would publish."""
	rid = rid or request_id()
	approvers = {key: list(values) for key, values in (("users", users), ("roles", roles)) if values}
	body = {
		"requestId": rid,
		"agent": "procurement-agent",
		"task": "TASK-8812",
		"actionSummary": f"Submit purchase order {rid} for 12,400 EUR",
		"payload": {"doctype": "Purchase Order", "name": rid, "action": "submit"},
		"risk": "high",
		"dueBy": format_time(dt.datetime.now(dt.timezone.utc) + due_in),
		"approvers": approvers,
		"reason": "Above the autonomous spending limit.",
		**payload,
	}
	return document_event(
		"Approval Request",
		rid,
		"requested",
		body,
		type="agent.approval.requested",
		source="urn:cauldron:agents:procurement",
		user="procurement-agent",
		tenant=None,
		correlation_id=correlation_id,  # a fresh one when None
	)


def responses(name: str) -> list[dict[str, Any]]:
	"""Returns the approval.response envelopes recorded for a request, oldest first."""
	rows = frappe.db.sql(
		"""SELECT envelope FROM `tabEvent Log` WHERE event_type = 'approval.response' AND entity_id = %s
		ORDER BY name""",
		(name,),
	)
	return [json.loads(row[0]) for row in rows]


def assignments(name: str) -> dict[str, str]:
	"""Returns each assignee of a request with the status of their ToDo."""
	rows = frappe.get_all(
		"ToDo",
		filters={"reference_type": "Approval Request", "reference_name": name},
		fields=["allocated_to", "status"],
	)
	return {row.allocated_to: row.status for row in rows}


def events_caused_by(event_id: str) -> list[dict[str, Any]]:
	"""Returns the envelopes recorded with ``event_id`` as their cause."""
	rows = frappe.db.sql(
		"SELECT envelope FROM `tabEvent Log` WHERE causation_id = %s ORDER BY name", (event_id,)
	)
	return [json.loads(row[0]) for row in rows]


def receive(envelope: Envelope) -> str:
	"""Runs the hooked handler as a consumer would (inside the event's causation); commits."""
	frappe.set_user("Administrator")
	with caused_by(envelope.id, envelope.metadata.correlation_id):
		create_approval_request(envelope)
	frappe.db.commit()
	return envelope.data.payload["requestId"]


class ApprovalCase(FrappeTestCase):
	"""The approval tests' roles and users in place; each test rolled back as Administrator."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_people()

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()
