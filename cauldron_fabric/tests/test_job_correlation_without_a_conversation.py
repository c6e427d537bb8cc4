"""A job with no conversation to continue starts its own: queued outside any conversation,
after a job that carried one in the same worker, before the app carried ids, or carrying an
invalid id. A request that only looks at the queues gets no id.

The jobs run in a real RQ worker process (test_job_correlation_support.run_as_worker).
"""

from __future__ import annotations

import json

import frappe

from cauldron_fabric.emit.context import CARRIED, caused_by
from cauldron_fabric.tests.test_job_correlation_support import NOTE_KWARGS, JobCase, kwargs_of


class TestJobsWithoutAConversationToContinue(JobCase):
	def test_jobs_enqueued_outside_any_conversation_each_start_their_own(self):
		jobs = [self.enqueue(n=n) for n in range(2)]
		self.assertNotIn(CARRIED, jobs[0].meta)
		before = set(frappe.db.sql_list("SELECT DISTINCT correlation_id FROM `tabEvent Log`"))
		self.run_as_worker(*(job.id for job in jobs))
		ids = [event["metadata"]["correlationId"] for event in self.noted()]
		self.assertEqual(len(set(ids)), 2, ids)
		self.assertFalse(before & set(ids))
		self.assertIsNone(getattr(frappe.local, "fabric_correlation_id", None))

	def test_a_job_after_one_that_carried_an_id_in_the_same_worker_starts_its_own(self):
		# RQ's worker forks a work horse per job, and Frappe destroys frappe.local after each.
		frappe.local.fabric_correlation_id = "order-flow-job-16"
		carrying = self.enqueue(n=1)
		frappe.local.fabric_correlation_id = None
		plain = self.enqueue(n=2)
		self.run_as_worker(carrying.id, plain.id)
		first, second = sorted(self.noted(), key=lambda event: kwargs_of(event)["n"])
		self.assertEqual(first["metadata"]["correlationId"], "order-flow-job-16")
		self.assertNotEqual(second["metadata"]["correlationId"], "order-flow-job-16")

	def test_a_request_that_only_looks_at_queues_gets_no_id(self):
		# Frappe's own pages count and list jobs through get_queue, and queue nothing.
		frappe.local.request = frappe._dict(headers={})
		self.assertIsInstance(frappe.utils.background_jobs.get_queue("default").count, int)
		self.assertIsInstance(frappe.utils.background_jobs.get_jobs(site=frappe.local.site), dict)
		self.assertIsNone(getattr(frappe.local, "fabric_correlation_id", None))

	def test_a_job_queued_at_the_commit_shares_the_id_of_the_requests_later_event(self):
		# The job's queue is taken before the request has an id; the request's event makes one.
		frappe.local.request = frappe._dict(headers={})
		job_id = f"fabric-after-commit-{frappe.generate_hash(length=8)}"
		frappe.enqueue(NOTE_KWARGS, enqueue_after_commit=True, job_id=job_id, by="job")
		frappe.get_doc({"doctype": "ToDo", "description": json.dumps({"by": "request"})}).insert()
		frappe.db.commit()
		queued = f"{frappe.local.site}::{job_id}"
		self.jobs.append(queued)
		self.run_as_worker(queued)
		by_job, by_request = sorted(self.noted(), key=lambda event: kwargs_of(event)["by"])
		self.assertEqual(by_job["metadata"]["correlationId"], by_request["metadata"]["correlationId"])
		self.assertEqual(by_job["metadata"]["correlationId"], frappe.local.fabric_correlation_id)

	def test_a_job_queued_before_the_upgrade_runs_and_starts_its_own(self):
		frappe.local.fabric_correlation_id = "order-flow-job-4"
		job = self.enqueue(old=True)
		del job.meta[CARRIED]  # as a version of the app that did not carry it queued it
		job.save_meta()
		self.run_as_worker(job.id)
		(event,) = self.noted()
		self.assertEqual(kwargs_of(event), {"old": True})
		self.assertNotEqual(event["metadata"]["correlationId"], "order-flow-job-4")

	def test_an_invalid_carried_id_is_ignored(self):
		frappe.local.fabric_correlation_id = "order-flow-job-5"
		with caused_by("consumed-event-5"):
			bad_correlation, bad_causation = self.enqueue(case=1), self.enqueue(case=2)
		bad_correlation.meta[CARRIED]["correlationId"] = "<img src=x onerror=alert(1)>"
		bad_causation.meta[CARRIED]["causationId"] = "c" * 300
		for job in (bad_correlation, bad_causation):
			job.save_meta()
		self.run_as_worker(bad_correlation.id, bad_causation.id)
		first, second = sorted(self.noted(), key=lambda event: kwargs_of(event)["case"])
		self.assertNotRegex(first["metadata"]["correlationId"], "[<>]")
		self.assertEqual(first["metadata"]["causationId"], "consumed-event-5")
		self.assertEqual(second["metadata"]["correlationId"], "order-flow-job-5")
		self.assertIsNone(second["metadata"]["causationId"])
