"""Jobs run in the caller's own process (``now``, synchronous, at the commit) keep the caller's
conversation and leave the caller as it was; delivery handlers called one after another in a
sending thread record in their own event's conversation, and pass it to no other handler.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import frappe
from frappe.utils.background_jobs import get_redis_conn
from rq.job import Job

from cauldron_fabric.delivery.handlers import SiteHandler, close_handler_connections
from cauldron_fabric.emit.context import CARRIED, causation_id, caused_by
from cauldron_fabric.testing.events import document_event
from cauldron_fabric.tests.test_job_correlation_support import (
	NOTE_KWARGS,
	JobCase,
	cancel_and_delete,
	kwargs_of,
)
from cauldron_fabric.tests.utils import ORDER, events_after, new_order

# The jobs the delivery handlers below queued, by id (they run in a sending thread).
QUEUED_BY_HANDLERS: list[str] = []


def db_set_a_row(envelope, payload) -> None:
	"""A delivery handler that changes an order's row alone: its parent's update, at the commit."""
	frappe.get_doc(ORDER, envelope.data.entity_id).items[0].db_set("qty", 7)


def note_and_queue_a_note(envelope, payload) -> None:
	"""A delivery handler that records a ToDo and queues a job."""
	frappe.get_doc({"doctype": "ToDo", "description": json.dumps({"by": "handler"})}).insert()
	QUEUED_BY_HANDLERS.append(frappe.enqueue(NOTE_KWARGS, by="job").id)


class TestJobsRunInTheCallersProcess(JobCase):
	def test_now_and_synchronous_runs_keep_the_callers_id_and_kwargs(self):
		frappe.local.fabric_correlation_id = "order-flow-job-6"
		frappe.enqueue(NOTE_KWARGS, now=True, run="now")
		frappe.enqueue(NOTE_KWARGS, is_async=False, run="sync")  # through RQ, as tests run jobs
		events = self.noted()
		self.assertEqual([kwargs_of(e) for e in events], [{"run": "now"}, {"run": "sync"}])
		self.assertEqual({e["metadata"]["correlationId"] for e in events}, {"order-flow-job-6"})
		self.assertEqual(frappe.local.fabric_correlation_id, "order-flow-job-6")

	def test_a_job_run_at_once_at_the_commit_leaves_the_caller_as_it_was(self):
		# In tests Frappe runs an is_async=False job through RQ, in the caller's process, and
		# queued after the commit it runs once the handler's block has ended.
		with caused_by("consumed-event-13", "conversation-13"):
			frappe.enqueue(NOTE_KWARGS, is_async=False, enqueue_after_commit=True, run="at commit")
		frappe.db.commit()
		self.assertEqual(len(self.noted()), 1)
		self.assertIsNone(causation_id())
		self.assertIsNone(getattr(frappe.local, "fabric_correlation_id", None))


class TestDeliveryHandlersOfOneSendingThread(JobCase):
	"""A running `fabric deliver` calls handler after handler in the same threads."""

	def setUp(self):
		super().setUp()
		self.pool = ThreadPoolExecutor(1)
		self.addCleanup(close_handler_connections)
		self.addCleanup(self.pool.shutdown)

	def handle(self, function, envelope) -> None:
		path = f"{__name__}.{function.__name__}"
		handler = SiteHandler(frappe.local.site, frappe.local.sites_path, path, "Administrator")
		self.pool.submit(handler, envelope, None).result()
		frappe.db.rollback()  # see what the handler committed

	def test_what_a_handlers_commit_records_is_in_its_events_conversation(self):
		order = new_order("a row changed by a delivery handler")
		frappe.db.commit()
		self.addCleanup(cancel_and_delete, order.name)
		handled = document_event(ORDER, order.name, correlation_id="conversation-15")
		self.handle(db_set_a_row, handled)
		_created, row_update = events_after(self.start, ORDER, order.name)
		self.assertEqual(row_update["data"]["payload"]["changes"]["items"]["new"][0]["qty"], 7)
		self.assertEqual(row_update["metadata"]["correlationId"], "conversation-15")
		self.assertEqual(row_update["metadata"]["causationId"], handled.id)

	def test_a_handlers_conversation_stays_out_of_the_next_handlers_and_its_jobs(self):
		order = new_order("a row changed by a delivery handler")
		frappe.db.commit()
		self.addCleanup(cancel_and_delete, order.name)
		self.handle(db_set_a_row, document_event(ORDER, order.name, correlation_id="conversation-14"))
		# Another module's event with no correlationId: its handler's changes start their own.
		unrelated = document_event("Probe", "1", "created")
		unrelated = replace(unrelated, metadata=replace(unrelated.metadata, correlation_id=None))
		self.handle(note_and_queue_a_note, unrelated)
		job = Job.fetch(QUEUED_BY_HANDLERS.pop(), connection=get_redis_conn())
		self.jobs.append(job.id)
		_created, row_update = events_after(self.start, ORDER, order.name)
		self.assertEqual(row_update["data"]["payload"]["changes"]["items"]["new"][0]["qty"], 7)
		(noted,) = self.noted()
		conversation = noted["metadata"]["correlationId"]
		self.assertNotEqual(conversation, row_update["metadata"]["correlationId"])
		self.assertEqual(noted["metadata"]["causationId"], unrelated.id)
		self.assertEqual(job.meta[CARRIED], {"correlationId": conversation, "causationId": unrelated.id})
