"""A background job continues the conversation of the request, job or consumed event that
enqueued it: its events carry the enqueuer's correlation id (and causation id), however Frappe
queues the job and however often it runs it.

The jobs run in a real RQ worker process (test_job_correlation_support.run_as_worker).
"""

from __future__ import annotations

import json

import frappe
from frappe.utils.background_jobs import enqueue as enqueue_bound_at_import

from cauldron_fabric.emit.context import caused_by
from cauldron_fabric.tests.test_job_correlation_support import (
	NOTE_KWARGS,
	JobCase,
	cancel_and_delete,
	delete_todo,
	kwargs_of,
	note_kwargs,
	queued_job,
)
from cauldron_fabric.tests.utils import ORDER, events_after, last_seq, new_order


def queue_a_note(**kwargs) -> None:
	"""The job's method: queues another job, which notes ``kwargs``."""
	frappe.enqueue(NOTE_KWARGS, **kwargs)


def note_kwargs_on_the_second_try(marker: str, **kwargs) -> None:
	"""The job's method: asks Frappe to run the job again (a new frappe.local), then notes."""
	if not frappe.cache.get_value(marker):
		frappe.cache.set_value(marker, 1, expires_in_sec=600)
		raise frappe.RetryBackgroundJobError
	note_kwargs(**kwargs)


class TestJobsContinueTheirEnqueuersConversation(JobCase):
	def test_a_job_carries_the_requests_correlation_id_and_gets_exactly_its_kwargs(self):
		frappe.local.fabric_correlation_id = "order-flow-job-1"  # as the request's header set it
		job = self.enqueue(reference_name="SINV-1", lines=[1, 2], flags={"x": None})
		self.run_as_worker(job.id)
		(event,) = self.noted()
		self.assertEqual(event["metadata"]["correlationId"], "order-flow-job-1")
		self.assertIsNone(event["metadata"]["causationId"])
		self.assertEqual(
			kwargs_of(event), {"reference_name": "SINV-1", "lines": [1, 2], "flags": {"x": None}}
		)

	def test_a_request_without_an_event_yet_shares_a_new_id_with_its_job(self):
		frappe.local.request = frappe._dict(headers={})  # a request that has recorded nothing yet
		job = self.enqueue()
		shared = frappe.local.fabric_correlation_id  # what the response returns to the caller
		self.run_as_worker(job.id)
		(event,) = self.noted()
		self.assertTrue(shared)
		self.assertEqual(event["metadata"]["correlationId"], shared)

	def test_a_job_enqueued_by_a_consumed_events_handler_carries_its_causation(self):
		with caused_by("consumed-event-7", "conversation-7"):
			job = self.enqueue(step="after the event")
		self.run_as_worker(job.id)
		(event,) = self.noted()
		self.assertEqual(event["metadata"]["correlationId"], "conversation-7")
		self.assertEqual(event["metadata"]["causationId"], "consumed-event-7")
		self.assertEqual(kwargs_of(event), {"step": "after the event"})

	def test_a_handlers_ids_that_its_own_events_keep_carry_into_its_job(self):
		# Another module's event id and correlationId are any text of up to 140 characters
		# without markup (a topic/partition/offset, a purchase order's number): the handler's
		# own events keep them, and so must the events of the job it queues.
		event_id, conversation = "erp/orders/0/1042", "PO/2024 0042 " + "x" * 127
		with caused_by(event_id, conversation):
			frappe.get_doc({"doctype": "ToDo", "description": json.dumps({"by": "handler"})}).insert()
			job = self.enqueue(by="job")
		self.run_as_worker(job.id)
		by_handler, by_job = sorted(self.noted(), key=lambda event: kwargs_of(event)["by"])
		self.assertEqual(kwargs_of(by_job), {"by": "job"})
		for event in (by_handler, by_job):
			self.assertEqual(event["metadata"]["correlationId"], conversation)
			self.assertEqual(event["metadata"]["causationId"], event_id)

	def test_enqueue_after_commit_carries_the_id_the_enqueuer_had(self):
		# The job is queued at the commit, after the handler's block has ended.
		job_id = f"fabric-after-commit-{frappe.generate_hash(length=8)}"
		with caused_by("consumed-event-8", "conversation-8"):
			frappe.enqueue(NOTE_KWARGS, enqueue_after_commit=True, job_id=job_id, step=8)
		frappe.db.commit()
		queued = f"{frappe.local.site}::{job_id}"
		self.jobs.append(queued)
		self.run_as_worker(queued)
		(event,) = self.noted()
		self.assertEqual(event["metadata"]["correlationId"], "conversation-8")
		self.assertEqual(event["metadata"]["causationId"], "consumed-event-8")

	def test_enqueue_doc_and_an_enqueue_bound_at_import_carry_it_too(self):
		# Data Import, Prepared Report and server scripts bind Frappe's enqueue at import time.
		frappe.local.fabric_correlation_id = "order-flow-job-2"
		todo = frappe.get_doc({"doctype": "ToDo", "description": "enqueue_doc target"}).insert()
		frappe.db.commit()
		self.addCleanup(delete_todo, todo.name)
		self.start = last_seq()
		bound = enqueue_bound_at_import(NOTE_KWARGS, via="bound")
		on_doc = frappe.enqueue_doc("ToDo", todo.name, "db_set", fieldname="description", value="set")
		self.jobs += [bound.id, on_doc.id]
		self.run_as_worker(bound.id, on_doc.id)
		noted, set_on_doc = sorted(self.noted(), key=lambda event: event["data"]["entityId"] == todo.name)
		self.assertEqual(kwargs_of(noted), {"via": "bound"})
		self.assertEqual(set_on_doc["data"]["payload"]["changes"]["description"]["new"], "set")
		self.assertEqual({e["metadata"]["correlationId"] for e in (noted, set_on_doc)}, {"order-flow-job-2"})

	def test_a_submit_queued_by_queue_action_carries_it(self):
		# As ERPNext queues the submit of a long Sales Invoice: the job is queued at the commit.
		order = new_order("submitted in a job")
		frappe.db.commit()
		self.addCleanup(cancel_and_delete, order.name)
		frappe.local.fabric_correlation_id = "order-flow-job-10"
		order.queue_action("submit")
		frappe.db.commit()
		job = queued_job(__name=order.name)
		self.jobs.append(job.id)
		self.run_as_worker(job.id)
		events = events_after(self.start, ORDER, order.name)
		self.assertEqual(
			[e["type"] for e in events][-2:], ["fabric_test_order.submitted", "business.transaction"]
		)
		self.assertEqual({e["metadata"]["correlationId"] for e in events[-2:]}, {"order-flow-job-10"})

	def test_a_job_queued_by_a_job_carries_it_on(self):
		step = f"inner-{frappe.generate_hash(length=8)}"
		with caused_by("consumed-event-12", "conversation-12"):
			outer = frappe.enqueue(f"{__name__}.queue_a_note", step=step)
		self.jobs.append(outer.id)
		self.run_as_worker(outer.id)
		inner = queued_job(step=step)
		self.jobs.append(inner.id)
		self.run_as_worker(inner.id)
		(event,) = self.noted()
		self.assertEqual(event["metadata"]["correlationId"], "conversation-12")
		self.assertEqual(event["metadata"]["causationId"], "consumed-event-12")

	def test_a_job_run_again_by_frappe_still_carries_it(self):
		# Frappe runs a job again after a deadlock or RetryBackgroundJobError, anew from its site.
		frappe.local.fabric_correlation_id = "order-flow-job-11"
		marker = f"fabric-retry-{frappe.generate_hash(length=8)}"
		job = frappe.enqueue(f"{__name__}.note_kwargs_on_the_second_try", marker=marker, attempt="again")
		self.jobs.append(job.id)
		# The second run commits; then Frappe 15's first run, whose frappe.local the second
		# destroyed, fails in its after_job step, and RQ marks the job failed.
		self.run_as_worker(job.id, status="failed")
		(event,) = self.noted()
		self.assertEqual(kwargs_of(event), {"attempt": "again"})
		self.assertEqual(event["metadata"]["correlationId"], "order-flow-job-11")

	def test_a_deduplicated_job_is_queued_once_and_carries_the_id(self):
		frappe.local.fabric_correlation_id = "order-flow-job-3"
		job_id = f"fabric-dedup-{frappe.generate_hash(length=8)}"
		first = frappe.enqueue(NOTE_KWARGS, job_id=job_id, deduplicate=True, copy=1)
		self.jobs.append(first.id)
		self.assertIsNone(frappe.enqueue(NOTE_KWARGS, job_id=job_id, deduplicate=True, copy=2))
		self.run_as_worker(first.id)
		(event,) = self.noted()
		self.assertEqual(kwargs_of(event), {"copy": 1})
		self.assertEqual(event["metadata"]["correlationId"], "order-flow-job-3")
