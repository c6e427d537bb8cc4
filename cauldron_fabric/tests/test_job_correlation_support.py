"""What the job correlation test modules share: a case that starts outside any conversation,
the job they queue, and a real RQ worker to run it.

Jobs are queued in Redis as Frappe queues them and run by a real RQ worker in a process of
its own, as ``bench worker --burst`` runs them (on a queue of the test's own, so that nothing
else waiting on the bench's queues runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import frappe
from frappe.utils.background_jobs import get_redis_conn
from rq.job import Job

from cauldron_fabric.tests.utils import ORDER, EmissionCase, events_after

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
			self.addCleanup(delete_todo, event["data"]["entityId"])
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


def delete_todo(name: str) -> None:
	"""Deletes the ToDo if it is still there, and commits."""
	frappe.delete_doc_if_exists("ToDo", name)
	frappe.db.commit()


def cancel_and_delete(name: str) -> None:
	"""Cancels the order if it was submitted, deletes it and commits."""
	order = frappe.get_doc(ORDER, name)
	if order.docstatus == 1:
		order.cancel()
	frappe.delete_doc(ORDER, name)
	frappe.db.commit()


def kwargs_of(event: dict) -> dict:
	return json.loads(event["data"]["payload"]["doc"]["description"])
