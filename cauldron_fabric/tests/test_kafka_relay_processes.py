"""Relays on a real site as processes: the relay command, its status, and the scheduler's safety net."""

from __future__ import annotations

import json
import signal
import socket
import time

import frappe
from frappe.utils import add_days, add_to_date, now_datetime

from cauldron_fabric.emit.scheduled import relay_pending_events
from cauldron_fabric.services.heartbeats import process_name, safety_net_name
from cauldron_fabric.services.relay import STATUS_KEY
from cauldron_fabric.services.status import relay_statuses
from cauldron_fabric.tests.test_kafka_relay_support import KafkaRelayCase, event_status, relay_until_idle
from cauldron_fabric.tests.utils import assert_usage_error, fabric_settings, start_fabric_command


class TestRelayProcesses(KafkaRelayCase):
	def test_relay_command_publishes_moments_after_commit_and_stops_on_sigterm(self):
		relay = start_fabric_command("relay", "--seconds", "60")
		try:
			deadline = time.monotonic() + 30
			while time.monotonic() < deadline and not any(
				r["name"].endswith(f":{relay.pid}") for r in relay_statuses()
			):
				time.sleep(0.1)  # until the relay reports its first cycle: connected and subscribed
			todo = frappe.get_doc({"doctype": "ToDo", "description": "relay command"}).insert()
			frappe.db.commit()
			committed = time.monotonic()
			while time.monotonic() - committed < 10 and event_status(todo.name)[0][1] != "Published":
				time.sleep(0.02)
			elapsed = time.monotonic() - committed
			self.assertEqual(
				event_status(todo.name)[0][1], "Published", "the relay command published nothing"
			)
			self.assertLess(elapsed, 5, "the relay did not publish promptly after the commit")
		finally:
			relay.send_signal(signal.SIGTERM)
			_, stderr = relay.communicate(timeout=20)
		self.assertEqual(relay.returncode, 0, stderr)
		self.assertIn(f"fabric relay for {frappe.local.site} stopped", stderr)
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

	def test_a_relay_idle_for_want_of_a_broker_stops_promptly_on_sigterm(self):
		# Its wait for a wake-up (or new settings) was not cut short by the signal: up to 10 s.
		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			relay = start_fabric_command("relay", "--seconds", "60")
			try:
				deadline = time.monotonic() + 30
				while time.monotonic() < deadline and not any(
					r["name"].endswith(f":{relay.pid}") for r in relay_statuses()
				):
					time.sleep(0.1)  # until it has read the settings and found no broker
				time.sleep(0.5)
				asked = time.monotonic()
				relay.send_signal(signal.SIGTERM)
				_, stderr = relay.communicate(timeout=20)
				took = time.monotonic() - asked
			finally:
				relay.kill()
		self.assertEqual(relay.returncode, 0, stderr)
		self.assertIn(f"fabric relay for {frappe.local.site} stopped", stderr)
		self.assertLess(took, 4, "the idle relay waited out its settings check before stopping")

	def test_relay_command_refuses_a_batch_size_out_of_range_with_a_clear_message(self):
		todo = frappe.get_doc({"doctype": "ToDo", "description": "batch size"}).insert()
		frappe.db.commit()  # something to claim: a negative LIMIT used to crash the relay on it
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "ToDo", todo.name)
		for size in ("-3", "0", "20000"):
			with self.subTest(size=size):
				stderr = assert_usage_error(self, "relay", "--batch-size", size, "--seconds", "5")
				self.assertIn("--batch-size", stderr)

	def test_stopped_relays_leave_no_status_and_the_scheduler_keeps_one_entry_per_host(self):
		# Every scheduler run is a new process: an entry per process grew the status hash by one
		# a minute, for ever, and every status read parsed them all.
		relay_until_idle()
		self.assertIsNone(frappe.cache.hget(STATUS_KEY, process_name()), "a stopped relay is not running")
		todo = frappe.get_doc({"doctype": "ToDo", "description": "safety net"}).insert()
		frappe.db.commit()
		for _ in range(2):
			relay_pending_events()
		self.assertEqual(event_status(todo.name)[0][1], "Published")
		mine = [r for r in relay_statuses() if r["name"].startswith(socket.gethostname() + ":")]
		self.assertEqual([r["name"] for r in mine], [safety_net_name()], "one entry for every run")
		killed = "gone-host:424242"  # a relay killed with SIGKILL cannot clean up after itself
		old = add_days(now_datetime(), -1).isoformat()
		frappe.cache.hset(STATUS_KEY, killed, json.dumps({"heartbeat": old, "last_error": None}))
		self.assertNotIn(killed, [r["name"] for r in relay_statuses()])
		self.assertIsNone(frappe.cache.hget(STATUS_KEY, killed), "forgotten after an hour of silence")

	def test_the_safety_net_is_not_shown_silent_between_its_minutely_runs(self):
		a_minute_ago = add_to_date(now_datetime(), seconds=-75).isoformat()
		names = (safety_net_name(), "busy-host:4242")  # the scheduler's entry, a relay's
		for name in names:
			frappe.cache.hset(STATUS_KEY, name, json.dumps({"heartbeat": a_minute_ago, "last_error": None}))
			self.addCleanup(frappe.cache.hdel, STATUS_KEY, name)
		stale = {r["name"]: r["stale"] for r in relay_statuses() if r["name"] in names}
		self.assertEqual(stale, {safety_net_name(): False, "busy-host:4242": True})
