"""Savepoints in the fabric's own processes: a consumer handler rolling back to a savepoint of
its own, and jobs, requests and consumers following savepoints from their start."""

from __future__ import annotations

import os
import subprocess
import sys

import frappe

from cauldron_fabric.tests.test_emission_savepoints import qty
from cauldron_fabric.tests.utils import ORDER, EmissionCase, events_after, new_order

# A worker's job or a web request in a fresh process, each running a Frappe method that loads
# nothing of the fabric, or a consumer's tracking store: are savepoints followed before it runs
# (its first savepoint may come before any document hook of the fabric has run)?
FRESH_PROCESS = """
import sys
import frappe
import frappe.app
from frappe.database.database import Database
from frappe.utils.background_jobs import execute_job
from werkzeug.test import Client

site, kind = sys.argv[1:3]
if kind == "consumer":
	from cauldron_fabric.consume.tracking import FrappeTrackingStore

	frappe.init(site=site, sites_path=".")
	frappe.connect()
	FrappeTrackingStore()
elif kind == "job":
	frappe.init(site=site, sites_path=".")
	frappe.connect()
	execute_job(site, "frappe.ping", None, "fabric-savepoint-probe", {}, is_async=False)
else:
	frappe.app._site = site
	Client(frappe.app.application).get("/api/method/ping")
print(getattr(Database.savepoint, "fabric_watched", False))
"""


def db_set_a_row_then_roll_back_to_a_savepoint(envelope, context) -> None:
	"""A handler that changes a row alone, then rolls back its own later work to a savepoint."""
	frappe.get_doc(ORDER, envelope.data.entity_id).items[0].db_set("qty", 6)
	frappe.db.savepoint("handler_own")
	frappe.get_doc({"doctype": "ToDo", "description": f"rolled back {envelope.id}"}).insert()
	frappe.db.rollback(save_point="handler_own")


class TestHandlersRollingBackToTheirOwnSavepoint(EmissionCase):
	def test_what_the_handler_did_before_its_savepoint_is_recorded(self):
		from cauldron_fabric.consume.handlers import SiteHandler
		from cauldron_fabric.consume.tracking import FrappeTrackingStore
		from cauldron_fabric.emit.recorder import new_envelope

		order = new_order("changed by a handler")
		frappe.db.commit()
		store = FrappeTrackingStore()
		store.begin()
		envelope = new_envelope("probe.handled", ORDER, order.name, "created", {})
		self.assertTrue(store.claim(f"fabric-savepoints-{frappe.generate_hash(length=6)}", envelope))
		function = db_set_a_row_then_roll_back_to_a_savepoint
		SiteHandler(f"{__name__}.{function.__name__}", function, "Administrator")(envelope, None)
		store.commit()
		frappe.set_user("Administrator")
		_created, update = events_after(self.start, ORDER)
		self.assertEqual([qty(update, "old"), qty(update, "new")], [[1, 3], [6, 3]])
		self.assertEqual(update["metadata"]["causationId"], envelope.id)
		self.assertEqual(events_after(self.start, "ToDo"), [])


class TestSavepointsFollowedFromTheStart(EmissionCase):
	def followed_in_a_fresh(self, kind: str) -> list[str]:
		done = subprocess.run(
			[sys.executable, "-c", FRESH_PROCESS, frappe.local.site, kind],
			cwd=os.path.abspath(frappe.get_site_path("..")),
			capture_output=True,
			text=True,
			timeout=120,
		)
		self.assertEqual(done.returncode, 0, done.stderr)
		return done.stdout.strip().splitlines()[-1:]

	def test_a_job_follows_savepoints_before_it_runs(self):
		self.assertEqual(self.followed_in_a_fresh("job"), ["True"])

	def test_a_request_follows_savepoints_before_it_runs(self):
		self.assertEqual(self.followed_in_a_fresh("request"), ["True"])

	def test_a_consumer_follows_savepoints_before_its_first_event(self):
		# Each event's unit of work is a savepoint, set before its handler runs.
		self.assertEqual(self.followed_in_a_fresh("consumer"), ["True"])
