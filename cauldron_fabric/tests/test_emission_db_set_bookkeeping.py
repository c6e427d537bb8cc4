"""Frappe db_sets bookkeeping of its own on every scheduled run or assignment: by default that
is no event, as for the set_values it keeps (emit/set_values.py, ``FRAPPE_BOOKKEEPING``); with
*Every write* it is one.

The Email Account pull (``pull_from_email_account``, every ten minutes) counts each pull whose
mailbox cannot be reached with a db_set of ``no_failed``: the tests run that job against a port
nothing listens on.
"""

from __future__ import annotations

import socket

import frappe
from frappe.email.doctype.email_account.email_account import pull_from_email_account

from cauldron_fabric.emit.policy import SET_VALUES_ALL, SET_VALUES_NONE, SET_VALUES_THAT_UPDATE_MODIFIED
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
)

ACCOUNT = "Email Account"
UPDATED = "email_account.updated"


def closed_port() -> int:
	"""Returns a local TCP port nothing listens on (one the system just handed out and took back)."""
	with socket.socket() as probe:
		probe.bind(("127.0.0.1", 0))
		return probe.getsockname()[1]


def unreachable_email_account():
	"""Inserts an incoming POP3 Email Account whose server refuses every connection (committed)."""
	tag = frappe.generate_hash(length=8)
	account = frappe.get_doc(
		{
			"doctype": ACCOUNT,
			"email_account_name": f"Fabric unreachable {tag}",
			"email_id": f"fabric-{tag}@example.com",
			"enable_incoming": 1,
			"use_imap": 0,
			"use_ssl": 0,
			"email_server": "127.0.0.1",
			"incoming_port": str(closed_port()),
			"awaiting_password": 1,
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()
	return account


class TestFrappesScheduledDbSets(EmissionCase):
	def setUp(self):
		super().setUp()
		self.account = unreachable_email_account()
		self.addCleanup(self.delete_account)

	def delete_account(self) -> None:
		frappe.db.rollback()
		# Six failed pulls in a row queue a job that turns the account off: never reached here.
		self.account.set_failed_attempts_count(0)
		frappe.delete_doc(ACCOUNT, self.account.name, force=True, ignore_permissions=True)
		frappe.db.commit()

	def pull(self) -> list[dict]:
		"""Runs Frappe's scheduled pull of the account once; returns the account's events since."""
		self.account.set_failed_attempts_count(0)
		counted = frappe.db.get_value(ACCOUNT, self.account.name, "no_failed")
		start = last_seq()
		pull_from_email_account(self.account.name)
		self.assertEqual(frappe.db.get_value(ACCOUNT, self.account.name, "no_failed"), counted + 1)
		return events_after(start, ACCOUNT, self.account.name)

	def test_a_failed_pull_counted_with_db_set_is_bookkeeping_by_default(self):
		for mode in (SET_VALUES_THAT_UPDATE_MODIFIED, SET_VALUES_NONE):
			with self.subTest(mode=mode), fabric_settings(capture_set_value=mode):
				self.assertEqual(self.pull(), [])

	def test_with_every_write_a_failed_pull_is_an_update(self):
		with fabric_settings(capture_set_value=SET_VALUES_ALL):
			(event,) = self.pull()
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(event["data"]["payload"]["via"], "db_set")
		self.assertEqual(event["data"]["payload"]["changes"]["no_failed"], {"old": 0, "new": 1})

	def test_a_db_set_of_anything_more_stays_an_event(self):
		# Frappe turns off incoming mail of an account that kept failing with a db_set: a change
		# admins and integrations must hear of, alone or with the counter.
		start = last_seq()
		self.account.db_set("enable_incoming", 0)
		self.account.db_set({"no_failed": 5, "enable_incoming": 1})
		events = events_after(start, ACCOUNT, self.account.name)
		self.assertEqual([event["data"]["payload"]["via"] for event in events], ["db_set", "db_set"])
		self.assertEqual(
			[sorted(event["data"]["payload"]["changes"]) for event in events],
			[["enable_incoming"], ["enable_incoming", "no_failed"]],
		)


class TestRoundRobinAssignment(EmissionCase):
	"""An Assignment Rule assigning round robin notes the user it picked with a db_set of
	``last_user`` on every assignment (AssignmentRule.do_assignment): bookkeeping, no event."""

	def setUp(self):
		super().setUp()
		self.delete_rules()
		self.rule = frappe.get_doc(
			{
				"doctype": "Assignment Rule",
				"name": f"Fabric round robin {frappe.generate_hash(length=6)}",
				"document_type": ORDER,
				"priority": 1,
				"rule": "Round Robin",
				"description": "Take care of {{ title }}",
				"assign_condition": "title.startswith('round robin')",
				"users": [{"user": "Administrator"}],
				"assignment_days": [
					{"day": day}
					for day in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
				],
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()  # Fabric Settings commit in a test: the rule is committed, and deleted after
		self.addCleanup(self.delete_rules)

	def delete_rules(self) -> None:
		"""Deletes this test's Assignment Rules (the first that applies assigns the order)."""
		frappe.db.rollback()
		for name in frappe.get_all(
			"Assignment Rule", {"name": ("like", "Fabric round robin %")}, pluck="name"
		):
			frappe.delete_doc("Assignment Rule", name, force=True, ignore_permissions=True)
		frappe.db.commit()

	def assign(self) -> tuple[list, list]:
		"""Inserts an order the rule assigns; returns the rule's events and the ToDos' since."""
		start = last_seq()
		order = new_order(f"round robin {frappe.generate_hash(length=6)}")
		self.assertEqual(frappe.db.get_value("Assignment Rule", self.rule.name, "last_user"), "Administrator")
		todos = [
			e
			for e in events_after(start, "ToDo")
			if e["data"]["payload"]["doc"]["reference_name"] == order.name
		]
		return events_after(start, "Assignment Rule", self.rule.name), todos

	def test_the_rules_note_of_whom_it_picked_is_bookkeeping_by_default(self):
		rule_events, todos = self.assign()
		self.assertEqual(rule_events, [])
		self.assertEqual([e["type"] for e in todos], ["todo.created"])  # the assignment itself is

	def test_with_every_write_it_is_an_update(self):
		with fabric_settings(capture_set_value=SET_VALUES_ALL):
			rule_events, _ = self.assign()
		(event,) = rule_events
		self.assertEqual(event["data"]["payload"]["via"], "db_set")
		self.assertEqual(
			event["data"]["payload"]["changes"]["last_user"], {"old": None, "new": "Administrator"}
		)
