"""A background job continues the conversation of the request, job or consumed event that
enqueued it: its events carry the enqueuer's correlation id (and causation id).

Jobs are queued in Redis as Frappe queues them and run by a real RQ worker in a process of
its own, as ``bench worker --burst`` runs them (on a queue of the test's own, so that nothing
else waiting on the bench's queues runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import frappe
from frappe.utils.background_jobs import enqueue as enqueue_bound_at_import
from frappe.utils.background_jobs import get_redis_conn
from rq.job import Job

from cauldron_fabric.delivery.handlers import SiteHandler, close_handler_connections
from cauldron_fabric.emit.context import CARRIED, causation_id, caused_by
from cauldron_fabric.testing.events import document_event
from cauldron_fabric.tests.test_http_support import HttpCase, api_token, request
from cauldron_fabric.tests.utils import ORDER, EmissionCase, events_after, last_seq, new_order

# Moves each job to a queue of its own and runs it with RQ's worker, which forks a work horse
# that calls Frappe's execute_job with the job's arguments read back from Redis.
WORKER = """
import sys
import frappe
from frappe.utils.background_jobs import get_redis_conn
from rq import Queue, Worker
from rq.job import Job

site, queue_name, *job_ids = sys.argv[1:]
with frappe.init_site(site):
	connection = get_redis_conn()
queue = Queue(queue_name, connection=connection)
for job_id in job_ids:
	job = Job.fetch(job_id, connection=connection)
	Queue(job.origin, connection=connection).remove(job)
	queue.enqueue_job(job)
Worker([queue], connection=connection).work(burst=True)
queue.delete(delete_jobs=False)
for job_id in job_ids:
	print(job_id, Job.fetch(job_id, connection=connection).get_status())
"""


def run_as_worker(case, job_ids, status: str = "finished") -> None:
	"""Runs the queued jobs in a worker process, then reads what they committed."""
	frappe.db.commit()
	queue = f"fabric-test-{frappe.generate_hash(length=8)}"
	done = subprocess.run(
		[sys.executable, "-c", WORKER, frappe.local.site, queue, *job_ids],
		cwd=os.path.abspath(frappe.get_site_path("..")),
		capture_output=True,
		text=True,
		timeout=120,
	)
	case.assertEqual(done.returncode, 0, done.stderr)
	statuses = dict(line.split() for line in done.stdout.splitlines() if line.startswith(frappe.local.site))
	case.assertEqual(statuses, dict.fromkeys(job_ids, status), done.stdout + done.stderr)
	frappe.db.rollback()  # see what the jobs committed


def note_kwargs(**kwargs) -> None:
	"""The job's method: inserts a ToDo that says which keyword arguments it was given."""
	frappe.get_doc({"doctype": "ToDo", "description": json.dumps(kwargs, sort_keys=True)}).insert()


NOTE_KWARGS = f"{__name__}.note_kwargs"


def queue_a_note(**kwargs) -> None:
	"""The job's method: queues another job, which notes ``kwargs``."""
	frappe.enqueue(NOTE_KWARGS, **kwargs)


def note_kwargs_on_the_second_try(marker: str, **kwargs) -> None:
	"""The job's method: asks Frappe to run the job again (a new frappe.local), then notes."""
	if not frappe.cache.get_value(marker):
		frappe.cache.set_value(marker, 1, expires_in_sec=600)
		raise frappe.RetryBackgroundJobError
	note_kwargs(**kwargs)


# The jobs the delivery handlers below queued, by id (they run in a sending thread).
QUEUED_BY_HANDLERS: list[str] = []


def db_set_a_row(envelope, payload) -> None:
	"""A delivery handler that changes an order's row alone: its parent's update, at the commit."""
	frappe.get_doc(ORDER, envelope.data.entity_id).items[0].db_set("qty", 7)


def note_and_queue_a_note(envelope, payload) -> None:
	"""A delivery handler that records a ToDo and queues a job."""
	frappe.get_doc({"doctype": "ToDo", "description": json.dumps({"by": "handler"})}).insert()
	QUEUED_BY_HANDLERS.append(frappe.enqueue(NOTE_KWARGS, by="job").id)


class JobCase(EmissionCase):
	"""Each test starts outside any conversation, as a command or the scheduler does."""

	def setUp(self):
		super().setUp()
		saved = {
			name: getattr(frappe.local, name, None)
			for name in ("fabric_correlation_id", "fabric_causation_id", "request")
		}
		self.addCleanup(_put_back, saved)
		_put_back(dict.fromkeys(saved))
		self.jobs: list[str] = []
		self.addCleanup(self.delete_jobs)

	def enqueue(self, **kwargs) -> Job:
		job = frappe.enqueue(NOTE_KWARGS, **kwargs)
		self.jobs.append(job.id)
		return job

	def run_as_worker(self, *job_ids: str, status: str = "finished") -> None:
		run_as_worker(self, job_ids, status)

	def noted(self) -> list[dict]:
		"""Returns the ToDo events recorded since the test started, with the kwargs each job got."""
		events = events_after(self.start, "ToDo")
		for event in events:
			self.addCleanup(_delete_todo, event["data"]["entityId"])
		return events

	def delete_jobs(self) -> None:
		connection = get_redis_conn()
		for job_id in self.jobs:
			if job := Job.fetch_many([job_id], connection=connection)[0]:
				job.delete()


def _put_back(values: dict) -> None:
	for name, value in values.items():
		setattr(frappe.local, name, value)


def queued_job(**job_kwargs) -> Job:
	"""Returns the one job waiting on the site's default queue whose method got ``job_kwargs``."""
	queue = frappe.utils.background_jobs.get_queue("default")
	jobs = [
		job
		for job in Job.fetch_many(queue.job_ids, connection=queue.connection)
		if job and job_kwargs.items() <= job.kwargs.get("kwargs", {}).items()
	]
	assert len(jobs) == 1, jobs
	return jobs[0]


def _delete_todo(name: str) -> None:
	frappe.delete_doc_if_exists("ToDo", name)
	frappe.db.commit()


def _cancel_and_delete(name: str) -> None:
	order = frappe.get_doc(ORDER, name)
	if order.docstatus == 1:
		order.cancel()
	frappe.delete_doc(ORDER, name)
	frappe.db.commit()


def kwargs_of(event: dict) -> dict:
	return json.loads(event["data"]["payload"]["doc"]["description"])


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
		self.addCleanup(_delete_todo, todo.name)
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
		self.addCleanup(_cancel_and_delete, order.name)
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
		self.addCleanup(_cancel_and_delete, order.name)
		handled = document_event(ORDER, order.name, correlation_id="conversation-15")
		self.handle(db_set_a_row, handled)
		_created, row_update = events_after(self.start, ORDER, order.name)
		self.assertEqual(row_update["data"]["payload"]["changes"]["items"]["new"][0]["qty"], 7)
		self.assertEqual(row_update["metadata"]["correlationId"], "conversation-15")
		self.assertEqual(row_update["metadata"]["causationId"], handled.id)

	def test_a_handlers_conversation_stays_out_of_the_next_handlers_and_its_jobs(self):
		order = new_order("a row changed by a delivery handler")
		frappe.db.commit()
		self.addCleanup(_cancel_and_delete, order.name)
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


class TestJobsOfARequestOverHttp(HttpCase):
	def test_a_request_that_only_looks_at_the_queued_jobs_returns_no_id(self):
		# Desk's Backups page asks for a files backup; one is waiting already, so Frappe only
		# lists the long queue's jobs (get_jobs, through get_queue) and queues nothing.
		waiting = frappe.enqueue(
			"frappe.desk.page.backups.backups.backup_files_and_notify_user",
			queue="long",
			user_email=self.manager,
		)
		self.addCleanup(waiting.delete)
		response = request(
			"post",
			"/api/method/frappe.desk.page.backups.backups.schedule_files_backup",
			data={"user_email": self.manager},
			headers={"Authorization": api_token(self.manager)},
		)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertIn("already queued", response.text)
		self.assertNotIn("X-Correlation-ID", response.headers)

	def test_a_bulk_delete_queued_by_a_request_carries_its_header(self):
		# More than ten: Frappe deletes them in a job, as the manager they are allocated to.
		todos = [
			frappe.get_doc(
				{"doctype": "ToDo", "description": f"bulk {n}", "allocated_to": self.manager}
			).insert()
			for n in range(11)
		]
		frappe.db.commit()
		names = [todo.name for todo in todos]
		for name in names:
			self.addCleanup(_delete_todo, name)
		response = request(
			"post",
			"/api/method/frappe.desk.reportview.delete_items",
			data={"doctype": "ToDo", "items": json.dumps(names)},
			headers={"Authorization": api_token(self.manager), "X-Correlation-ID": "bulk-delete-9"},
		)
		self.assertEqual(response.status_code, 200, response.text)
		job = queued_job(items=sorted(names, reverse=True))
		run_as_worker(self, [job.id])
		deleted = [e for e in events_after(self.start, "ToDo") if e["data"]["action"] == "deleted"]
		self.assertEqual(len(deleted), 11)
		self.assertEqual({e["metadata"]["correlationId"] for e in deleted}, {"bulk-delete-9"})
