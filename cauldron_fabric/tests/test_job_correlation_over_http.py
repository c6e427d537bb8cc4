"""Jobs a request queues over HTTP carry its X-Correlation-ID; a request that only looks at the
queued jobs returns no id.
"""

from __future__ import annotations

import json

import frappe

from cauldron_fabric.tests.test_http_support import HttpCase, api_token, request
from cauldron_fabric.tests.test_job_correlation_support import delete_todo, queued_job, run_as_worker
from cauldron_fabric.tests.utils import events_after


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
			self.addCleanup(delete_todo, name)
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
