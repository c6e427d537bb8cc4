"""Delivery workers seen from outside: heartbeats in get_status, ``bench fabric status`` and
``system.status``, overdue handlers, and the delivery queue's depth."""

from __future__ import annotations

import copy
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any
from unittest.mock import patch

import frappe
from frappe.tests.utils import FrappeTestCase, patch_hooks
from frappe.utils import add_days, now_datetime

from cauldron_fabric.api import settings as settings_api
from cauldron_fabric.core.naming import SYSTEM_STATUS
from cauldron_fabric.core.schema import catalog_entry
from cauldron_fabric.delivery import worker as worker_module
from cauldron_fabric.delivery.jobs import deliver_due_deliveries
from cauldron_fabric.delivery.status import WORKERS_KEY, delivery_queue_status
from cauldron_fabric.emit.scheduled import emit_heartbeat
from cauldron_fabric.registry import subjects, versions
from cauldron_fabric.services import heartbeats
from cauldron_fabric.services.heartbeats import safety_net_name
from cauldron_fabric.services.status import site_status
from cauldron_fabric.tests.test_delivery_support import (
	ReceiverCase,
	deliveries,
	save_todo,
)
from cauldron_fabric.tests.utils import (
	bench_command,
	emitted_heartbeat,
	fabric_settings,
	last_seq,
	start_fabric_command,
)

RELEASE = threading.Event()


def held_handler(envelope, payload) -> None:
	"""An in-app handler that runs until the test releases it (a handler stuck on a call)."""
	RELEASE.wait(60)


def wait_for(find: Callable[[], Any], seconds: float = 30) -> Any:
	"""Returns the first truthy value ``find`` gives, asking every 0.1 s for up to ``seconds``."""
	deadline = time.monotonic() + seconds
	while time.monotonic() < deadline:
		if found := find():
			return found
		time.sleep(0.1)
	raise AssertionError(f"nothing found in {seconds} s")


def worker_entry(name_suffix: str) -> dict[str, Any] | None:
	"""Returns the delivery worker whose name ends with ``name_suffix`` as get_status shows it."""
	frappe.db.rollback()
	workers = settings_api.get_status()["deliveryWorkers"]
	return next((w for w in workers if w["name"].endswith(name_suffix)), None)


def run_worker_in_thread(site: str, sites_path: str, stop: threading.Event, name: str) -> None:
	"""Runs a delivery worker named ``name`` on this thread's own site connection until ``stop``."""
	frappe.init(site=site, sites_path=sites_path)
	frappe.connect()
	try:
		worker_module.run_delivery_worker(stop.is_set, name=name)
	finally:
		frappe.destroy()


class WorkerCase(ReceiverCase):
	def start_worker(self) -> subprocess.Popen:
		worker = start_fabric_command("deliver", "--seconds", "90")
		self.addCleanup(frappe.cache.hdel, WORKERS_KEY, f"{socket.gethostname()}:{worker.pid}")
		self.addCleanup(lambda: worker.poll() is None and worker.kill())
		return worker


class TestDeliveryWorkerHeartbeats(WorkerCase):
	def test_a_running_worker_appears_with_its_totals_and_one_stopped_leaves_no_entry(self):
		subscription = self.subscription(webhook_url=self.receiver.url(f"/{self.tag}"))
		worker = self.start_worker()
		pid = f":{worker.pid}"
		wait_for(lambda: worker_entry(pid))  # up and beating
		save_todo(self.tag)
		save_todo(self.tag)
		entry = wait_for(lambda: (e := worker_entry(pid)) and e["delivered"] >= 2 and e)
		self.assertEqual([row.status for row in deliveries(subscription.name)], ["Delivered"] * 2)
		self.assertEqual((entry["stale"], entry["last_error"], entry["overdue"]), (False, None, []))
		self.assertEqual(entry["dead"], 0)
		shown = subprocess.run(
			bench_command("fabric", "status"),
			cwd=frappe.get_site_path(".."),
			capture_output=True,
			text=True,
			timeout=120,
		)
		self.assertEqual(shown.returncode, 0, shown.stderr)
		status = json.loads(shown.stdout)
		(listed,) = [w for w in status["deliveryWorkers"] if w["name"].endswith(pid)]
		self.assertGreaterEqual(listed["delivered"], 2)
		self.assertEqual(
			set(status["deliveries"]),
			{"pending", "pendingCapped", "due", "dueCapped", "dead", "deadCapped", "oldestDueSeconds"},
		)
		worker.send_signal(signal.SIGTERM)
		_, stderr = worker.communicate(timeout=30)
		self.assertEqual(worker.returncode, 0, stderr)
		self.assertIsNone(worker_entry(pid), "a stopped worker is not running")

	def test_a_killed_worker_goes_stale_and_is_left_out_of_the_site_status(self):
		worker = self.start_worker()
		pid = f":{worker.pid}"
		wait_for(lambda: worker_entry(pid))
		worker.kill()  # SIGKILL: nothing removes its entry
		worker.wait(10)
		self.assertFalse(worker_entry(pid)["stale"], "silent for a moment only")
		with patch.object(heartbeats, "STALE_SECONDS", 2):
			entry = wait_for(lambda: (e := worker_entry(pid)) and e["stale"] and e, seconds=10)
			self.assertGreaterEqual(
				(now_datetime() - frappe.utils.get_datetime(entry["heartbeat"])).seconds, 2
			)
			self.assertNotIn(entry["name"], [w["name"] for w in site_status()["deliveryWorkers"]])

	def test_the_schedulers_safety_net_reports_under_its_one_entry_with_nothing_to_deliver(self):
		# Shown stale between runs that found nothing due, it looked like a scheduler gone.
		name = safety_net_name()
		frappe.cache.hdel(WORKERS_KEY, name)
		deliver_due_deliveries()
		entry = worker_entry(name)
		self.assertEqual(entry and entry["name"], name)
		self.assertEqual((entry["stale"], entry["in_flight"], entry["overdue"]), (False, 0, []))


class TestOverdueHandlers(WorkerCase):
	def test_an_overdue_handler_is_listed_while_it_runs_and_gone_after_it_returns(self):
		# The threshold is the site's setting, read by the worker: it was a fixed 300 s.
		handler = f"{__name__}.held_handler"
		name = f"held-worker-{self.tag}"
		self.addCleanup(frappe.cache.hdel, WORKERS_KEY, name)
		RELEASE.clear()
		self.addCleanup(RELEASE.set)
		stop = threading.Event()
		with (
			patch_hooks({"fabric_handlers": {"todo.*": [handler]}}),
			fabric_settings(handler_overdue_seconds=1),
		):
			subscription = self.subscription(destination_type="In-app handler", handler=handler)
			save_todo(self.tag)
			site, sites_path = frappe.local.site, frappe.local.sites_path
			thread = threading.Thread(target=run_worker_in_thread, args=(site, sites_path, stop, name))
			thread.start()
			try:
				entry = wait_for(lambda: (e := worker_entry(name)) and e["overdue"] and e)
				(overdue,) = entry["overdue"]
				event_id = json.loads(deliveries(subscription.name)[0]["envelope"])["id"]
				self.assertEqual(
					(overdue["event"], overdue["subscription"], overdue["destination"]),
					(event_id, subscription.name, f"handler:{handler}"),
				)
				self.assertGreaterEqual(overdue["running_seconds"], 1)
				self.assertEqual((entry["in_flight"], entry["stale"]), (1, False))
				self.assert_heartbeat_event_lists(name, event_id)
				RELEASE.set()
				done = wait_for(lambda: (e := worker_entry(name)) and e["delivered"] >= 1 and e)
				self.assertEqual((done["overdue"], done["in_flight"]), ([], 0))
			finally:
				RELEASE.set()
				stop.set()
				thread.join(60)
		self.assertEqual([row.status for row in deliveries(subscription.name)], ["Delivered"])

	def test_settings_saved_before_the_threshold_existed_get_the_default(self):
		from cauldron_fabric.patches.handlers_are_overdue_after_the_default import execute

		field = "handler_overdue_seconds"
		self.addCleanup(frappe.db.rollback)
		frappe.db.delete("Singles", {"doctype": "Fabric Settings", "field": field})
		frappe.db.value_cache.pop("Fabric Settings", None)
		self.assertEqual(frappe.db.get_single_value("Fabric Settings", field), 0, "read as 0")
		self.assertEqual(
			worker_module.load_delivery_settings().overdue_after, 300, "the worker reads it as 300"
		)
		execute()
		frappe.db.value_cache.pop("Fabric Settings", None)
		self.assertEqual(frappe.db.get_single_value("Fabric Settings", field), 300)

	def assert_heartbeat_event_lists(self, worker: str, event_id: str) -> None:
		"""Checks the ``system.status`` event names the overdue attempt and passed its schema."""
		row = emitted_heartbeat()
		self.assertNotEqual(row.status, "Invalid", row.last_error)
		payload = json.loads(row.envelope)["data"]["payload"]
		(listed,) = [w for w in payload["deliveryWorkers"] if w["name"] == worker]
		self.assertEqual([o["event"] for o in listed["overdue"]], [event_id])
		self.assertGreaterEqual(payload["deliveries"]["pending"], 1)


class TestDeliveryQueueDepth(WorkerCase):
	def test_the_queue_depth_counts_pending_due_and_dead_deliveries_and_the_oldest_wait(self):
		self.subscription(webhook_url=self.receiver.url(f"/{self.tag}"))
		subscription = self.created[-1]
		before = delivery_queue_status()
		for _ in range(4):
			save_todo(self.tag)
		rows = [row.name for row in deliveries(subscription)]
		later, dead, long_due = rows[0], rows[1], rows[2]  # rows[3] stays due now
		table = "`tabEvent Delivery`"
		frappe.db.sql(
			f"UPDATE {table} SET next_attempt_at = %s WHERE name = %s", (add_days(now_datetime(), 1), later)
		)
		frappe.db.sql(f"UPDATE {table} SET status = 'Dead' WHERE name = %s", (dead,))
		waited = 400 * 86400  # longer than anything another test leaves behind
		frappe.db.sql(
			f"UPDATE {table} SET next_attempt_at = %s WHERE name = %s",
			(add_days(now_datetime(), -400), long_due),
		)
		frappe.db.commit()
		after = delivery_queue_status()
		self.assertEqual(
			{key: after[key] - before[key] for key in ("pending", "due", "dead")},
			{"pending": 3, "due": 2, "dead": 1},
		)
		self.assertAlmostEqual(after["oldestDueSeconds"], waited, delta=60)
		self.assertEqual(settings_api.get_status()["deliveries"]["dead"], after["dead"])


class TestHeartbeatEventSchema(FrappeTestCase):
	def test_the_heartbeat_is_kept_invalid_not_failing_while_its_schema_lacks_the_deliveries(self):
		# Until the migrate registers this version's catalog, and for good where the subject's
		# compatibility mode refuses it, the latest system.status schema allows no deliveries: the
		# scheduler job failed every 5 minutes under "Reject" instead of showing why.
		schema = copy.deepcopy(catalog_entry(SYSTEM_STATUS).schema)
		for part in ("deliveries", "deliveryWorkers"):
			del schema["properties"][part]
		schema["title"] = "System status, as before deliveries were reported"
		with fabric_settings(invalid_event_policy="Reject", emit_heartbeat=1):
			try:
				subjects.set_subject_mode(SYSTEM_STATUS, "NONE")
				versions.register_schema(SYSTEM_STATUS, schema)
				start = last_seq()
				emit_heartbeat()
				(row,) = frappe.db.sql(
					"SELECT status, last_error FROM `tabEvent Log` WHERE name > %s AND event_type = %s",
					(start, SYSTEM_STATUS),
					as_dict=True,
				)
				self.assertEqual(row.status, "Invalid", "kept, and shown as not matching its schema")
				self.assertIn("deliveries", row.last_error)
			finally:
				frappe.db.rollback()
