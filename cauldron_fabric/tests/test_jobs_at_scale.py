"""Scheduler jobs on a busy site: what a purge deletes while other work goes on, and an expiry run
that meets requests it cannot expire.

Their timing at scale (hundreds of thousands of rows, saves beside the purges, two purges at once)
is measured by tests/benchmarks/bench_jobs_at_scale.py; these tests pin what must stay true.
"""

from __future__ import annotations

import datetime as dt
from unittest.mock import patch

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import add_days, now_datetime

from cauldron_fabric.approvals import expiry
from cauldron_fabric.services import retention
from cauldron_fabric.services.relay import site_db_connector
from cauldron_fabric.tests.test_approval_support import ApprovalCase, approval_requested, receive
from cauldron_fabric.tests.utils import fabric_settings

DELIVERIES = "tabEvent Delivery"
AGE_DAYS = 3000  # older than anything else on the site: the purges below reach only these rows


class TestPurgeBesideOtherWork(FrappeTestCase):
	def setUp(self):
		self.subscription = f"jobs-at-scale-{frappe.generate_hash(length=6)}"
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "Event Delivery", {"subscription": self.subscription})
		self.other = site_db_connector()()
		self.addCleanup(self.other.close)

	def discarded_deliveries(self, count: int) -> list[int]:
		"""Inserts ``count`` Discarded deliveries last changed ``AGE_DAYS`` ago (committed)."""
		names = []
		for _ in range(count):
			row = frappe.get_doc(
				{
					"doctype": "Event Delivery",
					"subscription": self.subscription,
					"event_id": frappe.generate_hash(),
					"event_type": "todo.created",
					"status": "Discarded",
				}
			)
			row.db_insert()
			names.append(row.name)
		frappe.db.sql(
			f"UPDATE `{DELIVERIES}` SET modified = NOW() - INTERVAL %s DAY WHERE name IN %s",
			(AGE_DAYS, tuple(names)),
		)
		frappe.db.commit()
		return names

	def purge_while(self, other_work: str, params: tuple) -> int:
		"""Runs the deliveries' purge; ``other_work`` is committed on another connection right after
		the purge has read its chunk, before it deletes it. Returns what the purge reports."""
		sql = frappe.db.sql

		def chunk_then_other_work(query, *args, **kwargs):
			result = sql(query, *args, **kwargs)
			if str(query).lstrip().startswith(f"SELECT name, `modified` FROM `{DELIVERIES}`") and result:
				with self.other.cursor() as cursor:
					cursor.execute(other_work, params)
				self.other.commit()
			return result

		cutoff = add_days(now_datetime(), 10 - AGE_DAYS)
		with patch.object(frappe.db, "sql", chunk_then_other_work):
			return retention.purge(DELIVERIES, ("Delivered", "Discarded"), "modified", cutoff, chunk=10)

	def test_a_delivery_retried_after_its_chunk_was_read_is_not_deleted(self):
		# A dead letter's Retry makes its Discarded delivery Pending again (delivery.dead_letters.retry)
		# while the purge holds the chunk it read without locks.
		retried, *others = self.discarded_deliveries(3)
		self.purge_while(
			f"UPDATE `{DELIVERIES}` SET status = 'Pending', attempts = 0, modified = NOW(6) WHERE name = %s",
			(retried,),
		)
		self.assertEqual(frappe.db.get_value("Event Delivery", retried, "status"), "Pending")
		self.assertEqual(frappe.db.count("Event Delivery", {"name": ("in", others)}), 0)

	def test_rows_another_purge_deleted_first_are_not_counted_twice(self):
		# A second scheduler worker runs the same purge: it deletes one row of the chunk first.
		first, *others = self.discarded_deliveries(3)
		deleted = self.purge_while(f"DELETE FROM `{DELIVERIES}` WHERE name = %s", (first,))
		self.assertEqual(deleted, len(others))
		self.assertEqual(frappe.db.count("Event Delivery", {"subscription": self.subscription}), 0)

	def test_the_delete_of_a_chunk_reads_only_the_primary_key(self):
		# Its age and status conditions could be read through their indexes, locking the range.
		names = self.discarded_deliveries(3)
		for table, statuses, age_column in (
			(DELIVERIES, ("Delivered", "Discarded"), "modified"),
			("tabEvent Log", ("Published", "Recorded"), "creation"),
			("tabProcessed Event", (), "modified"),
		):
			sql, params = retention.delete_chunk(table, names, statuses, age_column, now_datetime())
			(row,) = frappe.db.sql(f"EXPLAIN {sql}", params, as_dict=True)
			self.assertEqual(row.key, "PRIMARY", table)


class TestExpiryPastRequestsThatFail(ApprovalCase):
	def test_requests_that_fail_to_expire_hold_back_no_later_one(self):
		poisoned = [receive(approval_requested(due_in=-dt.timedelta(days=1))) for _ in range(2)]
		later = receive(approval_requested(due_in=-dt.timedelta(minutes=5)))
		self.addCleanup(frappe.db.commit)
		for name in (*poisoned, later):
			self.addCleanup(frappe.db.delete, "Approval Request", {"name": name})
			self.addCleanup(frappe.db.delete, "Approval Request Approver", {"parent": name})
		# Due the earliest of all the site's requests, so they head every page.
		for days, name in enumerate(poisoned):
			frappe.db.set_value("Approval Request", name, "due_by", dt.datetime(2000, 1, 1 + days))
		frappe.db.commit()
		expire = expiry.expire_request

		def fails_for_poisoned(doc):
			if doc.name in poisoned:
				raise frappe.ValidationError("cannot expire")
			return expire(doc)

		for name in poisoned:
			self.addCleanup(frappe.cache.delete, frappe.cache.make_key(f"{expiry.FAILED_KEY}{name}"))
		with (
			patch.object(expiry, "BATCH", len(poisoned)),
			patch.object(expiry, "expire_request", fails_for_poisoned),
			patch.object(frappe, "log_error") as logged,
			fabric_settings(approval_expiry_action="Reject"),
		):
			expiry.expire_overdue_requests()
			expiry.expire_overdue_requests()
		self.assertEqual(frappe.db.get_value("Approval Request", later, "status"), "Expired")
		statuses = frappe.get_all("Approval Request", {"name": ("in", poisoned)}, pluck="status")
		self.assertEqual(statuses, ["Pending", "Pending"])
		# Each failure logged once a day, not at every run (before: 720 errors a day a request).
		self.assertEqual(
			sorted(
				title
				for title in (call.kwargs.get("title", "") for call in logged.call_args_list)
				if title.startswith("Approval request")
			),
			sorted(f"Approval request {name} could not expire" for name in poisoned),
		)


class TestExpiryReadsThroughAnIndex(FrappeTestCase):
	def test_pending_requests_due_first_are_read_through_the_status_and_due_index(self):
		# Before: no such index, and every run (each two minutes) scanned and sorted the table.
		indexes = frappe.db.sql(
			"SHOW INDEX FROM `tabApproval Request` WHERE Key_name = 'fabric_pending_due'", as_dict=True
		)
		self.assertEqual(
			[row.Column_name for row in sorted(indexes, key=lambda row: row.Seq_in_index)],
			["status", "due_by"],
		)

	def test_dead_letters_are_read_by_status_oldest_first_through_an_index(self):
		# Retry all matching reads the dead letters oldest first, the list newest first: before,
		# no index served either, and each call scanned and sorted the whole table.
		indexes = frappe.db.sql(
			"SHOW INDEX FROM `tabDead Letter` WHERE Key_name = 'fabric_dead_letter_status'", as_dict=True
		)
		self.assertEqual(
			[row.Column_name for row in sorted(indexes, key=lambda row: row.Seq_in_index)],
			["status", "creation"],
		)
		(plan,) = frappe.db.sql(
			"EXPLAIN SELECT name FROM `tabDead Letter` FORCE INDEX (fabric_dead_letter_status)"
			" WHERE status = 'Dead' ORDER BY creation LIMIT 5000",
			as_dict=True,
		)
		self.assertNotIn("filesort", plan.Extra or "", plan)
