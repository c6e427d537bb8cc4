"""Endpoints do bounded work whatever their caller sends, and whoever the caller is."""

from __future__ import annotations

import frappe
from frappe.utils import add_days, now_datetime

from cauldron_fabric.api import approvals as approvals_api
from cauldron_fabric.api import events as events_api
from cauldron_fabric.tests.test_http_support import HttpCase


def statements_run() -> int:
	"""Returns how many statements this connection has sent to the database so far."""
	return int(frappe.db.sql("SHOW SESSION STATUS LIKE 'Questions'")[0][1])


def open_request(approver: str, *, approver_type: str = "User", requested_by: str = "agent@example.com"):
	"""Stores an open approval request naming ``approver`` (uncommitted), without its notifications."""
	request_id = f"bounds-{frappe.generate_hash(length=10)}"
	doc = frappe.get_doc(
		{
			"doctype": "Approval Request",
			"request_id": request_id,
			"status": "Pending",
			"risk": "low",
			"due_by": add_days(now_datetime(), 1),
			"requested_by": requested_by,
			"action_summary": "bounded listing",
			"payload": "{}",
			"correlation_id": request_id,
			"approvers": [{"approver_type": approver_type, "approver": approver}],
		}
	)
	doc.set_new_name()
	doc.set_parent_in_children()
	doc.db_insert()
	for row in doc.approvers:
		row.db_insert()
	return doc.name


class TestBoundedWork(HttpCase):
	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()

	def test_requeue_takes_no_more_event_ids_than_it_says(self):
		# Each id goes into one query and one UPDATE: a body of a million ids held the database.
		frappe.set_user(self.manager)
		ids = [f"evt-{n}" for n in range(events_api.MAX_REQUEUE + 1)]
		with self.assertRaises(frappe.ValidationError) as refused:
			events_api.requeue(ids)
		self.assertIn(str(events_api.MAX_REQUEUE), str(refused.exception))
		self.assertEqual(events_api.requeue(ids[:-1]), {"requeued": 0})

	def test_listing_ones_own_open_requests_costs_the_same_however_many_others_are_open(self):
		# Every logged-in user may ask for the requests they may decide: read one by one, the
		# requests of everyone else made each call load every open request on the site.
		mine = open_request(self.clerk)
		theirs = open_request("Blogger", approver_type="Role")  # the clerk holds Blogger
		own = open_request(self.clerk, requested_by=self.clerk)  # four eyes: never the clerk's to decide

		def listed_with_cost() -> tuple[set[str], int]:
			frappe.set_user(self.clerk)
			before = statements_run()
			names = {r["name"] for r in approvals_api.list_requests(mine=True, limit=200)["requests"]}
			cost = statements_run() - before
			frappe.set_user("Administrator")
			return names, cost

		names, few_open = listed_with_cost()
		self.assertTrue({mine, theirs} <= names and own not in names, names)
		for _ in range(40):
			open_request(self.manager)
		names, many_open = listed_with_cost()
		self.assertTrue({mine, theirs} <= names and own not in names, names)
		self.assertLess(many_open - few_open, 10, (few_open, many_open))
