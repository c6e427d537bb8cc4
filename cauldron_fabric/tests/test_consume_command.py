"""``bench fabric consume`` as operators run it: several processes, status over the API, SIGTERM."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import consumers as consumers_api
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.testing.kafka_broker import create_topic, free_port
from cauldron_fabric.tests.test_approval_support import OUTSIDER, approval_requested, ensure_people
from cauldron_fabric.tests.test_consume_support import publish
from cauldron_fabric.tests.utils import fabric_settings, start_broker, start_fabric_command


def wait_for(condition, timeout: float, interval: float = 0.2):
	"""Polls ``condition`` (seeing other connections' commits) until it holds or time runs out."""
	deadline = time.monotonic() + timeout
	while True:
		frappe.db.rollback()
		value = condition()
		if value or time.monotonic() >= deadline:
			return value
		time.sleep(interval)


class TestConsumeCommand(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_people()
		start_broker(cls, consumer_max_attempts=2, handler_user="Administrator")

	def finished(self, *args: str) -> tuple[subprocess.Popen, str]:
		"""Runs ``bench fabric *args`` to its end (a minute at most); returns it and its stderr."""
		command = start_fabric_command(*args)
		try:
			_, stderr = command.communicate(timeout=60)
		except subprocess.TimeoutExpired:
			command.kill()
			_, stderr = command.communicate()
			self.fail(f"still running after 60 s: {stderr[-2000:]}")
		return command, stderr

	def start_command(self, group: str, topic: str, concurrency: int) -> subprocess.Popen:
		return start_fabric_command(
			"consume",
			"--group",
			group,
			"--topics",
			topic,
			"--concurrency",
			str(concurrency),
			"--seconds",
			"120",
		)

	def test_the_command_splits_a_group_over_processes_reports_and_stops_on_sigterm(self):
		topic, group = f"{self.prefix}.agents", f"command-{frappe.generate_hash(length=6)}"
		create_topic(self.broker.bootstrap, topic, 4)
		command = self.start_command(group, topic, concurrency=2)
		try:

			def members():
				statuses = consumers_api.get_consumers(group)["consumers"]
				return statuses if len(statuses) == 2 and all(s["partitions"] for s in statuses) else None

			statuses = wait_for(members, 60)
			self.assertTrue(statuses, "two consumer processes joined the group and got partitions")
			owned = [{p["partition"] for p in s["partitions"] if p["topic"] == topic} for s in statuses]
			self.assertFalse(owned[0] & owned[1], "each partition belongs to one process")
			self.assertEqual(owned[0] | owned[1], {0, 1, 2, 3})

			events = [approval_requested() for _ in range(6)]
			publish(self.broker.bootstrap, topic, events)
			names = [e.data.payload["requestId"] for e in events]
			created = wait_for(lambda: frappe.db.count("Approval Request", {"name": ("in", names)}) == 6, 60)
			self.assertTrue(created, "the command's consumers created every approval request")
			reported = wait_for(
				lambda: consumers_api.get_consumers(group)["totals"].get("processed") == 6, 20
			)
			self.assertTrue(reported, consumers_api.get_consumers(group))
			lag = wait_for(lambda: consumers_api.get_lag(group, topic)["lag"] == 0, 20)
			self.assertTrue(lag, "the processed offsets are committed")
		finally:
			command.send_signal(signal.SIGTERM)
			_, stderr = command.communicate(timeout=60)
		self.assertEqual(command.returncode, 0, stderr)
		self.assertEqual(stderr.count("stopped"), 2, stderr)
		self.assertEqual(
			consumers_api.get_consumers(group)["consumers"], [], "stopped consumers leave no status"
		)

	def test_a_killed_consumer_shows_as_stale_and_is_forgotten_after_an_hour_of_silence(self):
		from cauldron_fabric.consume.status import STATUS_KEY

		topic, group = f"{self.prefix}.killed", f"killed-{frappe.generate_hash(length=6)}"
		create_topic(self.broker.bootstrap, topic, 1)
		command = self.start_command(group, topic, concurrency=1)
		try:
			statuses = wait_for(lambda: consumers_api.get_consumers(group)["consumers"], 60)
			self.assertTrue(statuses, "the consumer reported itself")
		finally:
			command.kill()  # SIGKILL: no chance to remove its status
			command.communicate(timeout=30)
		(left,) = consumers_api.get_consumers(group)["consumers"]
		self.assertFalse(left["stale"], "just killed, it is not known to be gone yet")

		def silent_for(seconds: int) -> None:
			heartbeat = frappe.utils.add_to_date(frappe.utils.now_datetime(), seconds=-seconds)
			frappe.cache.hset(
				STATUS_KEY, left["name"], json.dumps({**left, "heartbeat": heartbeat.isoformat()})
			)

		silent_for(61)
		(left,) = consumers_api.get_consumers(group)["consumers"]
		self.assertTrue(left["stale"])
		self.assertEqual(
			consumers_api.get_consumers(group)["totals"], {}, "a stale consumer counts for nothing"
		)
		silent_for(3601)
		self.assertEqual(consumers_api.get_consumers(group)["consumers"], [])
		self.assertNotIn(
			left["name"].encode(), frappe.cache.hkeys(STATUS_KEY), "its entry is gone from Redis"
		)

	def test_a_pattern_that_is_no_regex_is_refused_with_a_clear_message(self):
		for concurrency in ("1", "2"):
			with self.subTest(concurrency=concurrency):
				command, stderr = self.finished(
					"consume", "--pattern", "[", "--concurrency", concurrency, "--seconds", "30"
				)
				# The same code however many consumers: refused settings exit 2, not 2 or 1.
				self.assertEqual(command.returncode, 2, stderr)
				self.assertIn("is not a regular expression", stderr)
				self.assertNotIn("Traceback", stderr)
				# Before: "fabric consumer … started" came just before the refusal.
				self.assertNotIn("started", stderr)

	def test_a_consumer_whose_broker_is_down_says_it_waits_and_stops_in_time(self):
		# Before: it said "started" and then nothing, while it waited for a broker that was down.
		with fabric_settings(bootstrap_servers=f"127.0.0.1:{free_port()}"):
			command, stderr = self.finished("consume", "--topics", f"{self.prefix}.down", "--seconds", "8")
		self.assertEqual(command.returncode, 0, stderr)  # an outage delays work, it is no failure
		self.assertEqual(stderr.count("waits for its broker"), 1, stderr)
		self.assertNotIn("started", stderr)
		self.assertNotIn("Traceback", stderr)

	def test_the_consumer_apis_are_for_managers(self):
		frappe.set_user(OUTSIDER)
		try:
			with self.assertRaises(frappe.PermissionError):
				consumers_api.get_consumers()
			with self.assertRaises(frappe.PermissionError):
				consumers_api.get_lag("any")
		finally:
			frappe.set_user("Administrator")

	def test_the_lag_of_a_topic_that_does_not_exist_is_refused_not_zero(self):
		known = f"{self.prefix}.known"
		create_topic(self.broker.bootstrap, known, 2)
		lag = consumers_api.get_lag("lag-probe", known)
		self.assertEqual([p["partition"] for p in lag["partitions"]], [0, 1])
		missing = f"{self.prefix}.typo"
		with self.assertRaises(frappe.ValidationError) as refused:
			consumers_api.get_lag("lag-probe", f"{known},{missing}")
		self.assertIn(missing, str(refused.exception))

	def test_the_lag_counts_copies_waiting_in_retry_topics_past_the_current_attempts(self):
		# Attempts are 2 here (one retry topic); copies from when they were higher still wait
		# in .retry.3, and the group's consumers will read them.
		known, group = f"{self.prefix}.lagged", f"lag-{frappe.generate_hash(length=6)}"
		create_topic(self.broker.bootstrap, known, 1)
		older = f"{group}.retry.3"
		create_topic(self.broker.bootstrap, older, 1)
		publish(self.broker.bootstrap, older, [b'{"waiting": 1}', b'{"waiting": 2}'])
		lag = consumers_api.get_lag(group, known)
		waiting = [p for p in lag["partitions"] if p["topic"] == older]
		self.assertEqual([p["lag"] for p in waiting], [2], lag)
		self.assertEqual(lag["lag"], 2)

	def test_with_no_broker_configured_the_message_names_both(self):
		from cauldron_fabric.tests.utils import fabric_settings

		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			with self.assertRaisesRegex(frappe.ValidationError, "No Kafka or RabbitMQ connection"):
				consumers_api.get_lag("nowhere")
			with self.assertRaisesRegex(frappe.ValidationError, "No rabbitmq connection"):
				consumers_api.get_lag("nowhere", broker="rabbitmq")  # the one asked for

	def test_a_broker_down_at_start_makes_the_consumer_wait_not_fail(self):
		from cauldron_fabric.consume.runner import run_consumer_for
		from cauldron_fabric.testing.kafka_broker import free_port
		from cauldron_fabric.tests.utils import fabric_settings

		with fabric_settings(bootstrap_servers=f"127.0.0.1:{free_port()}"):
			started = time.monotonic()
			counts = run_consumer_for(group="waiting", topics=["nowhere"], max_seconds=2)
		self.assertEqual(counts.processed, 0)
		self.assertGreaterEqual(time.monotonic() - started, 2)

	def test_the_command_refuses_to_run_without_anything_to_read(self):
		with self.assertRaises(Exception) as refused:
			from cauldron_fabric.consume.runner import default_topics
			from cauldron_fabric.consume.settings import load_consumer_settings
			from cauldron_fabric.core.consumer import HandlerTable

			default_topics(load_consumer_settings(), HandlerTable.from_mapping({"**": lambda e, c: None}))
		self.assertIn("--topics", str(refused.exception))


def crashing_child(started: str) -> Callable:
	"""Returns a child for the supervisor that notes its start in a file, then crashes."""

	def child(stopping: list[int]) -> int:
		with open(started, "a") as notes:
			notes.write("started\n")
		raise RuntimeError("the consumer could not start")

	return child


class TestConsumeSupervisor(FrappeTestCase):
	def test_a_child_that_keeps_dying_is_explained_backed_off_and_not_restarted_past_seconds(self):
		from cauldron_fabric.consume import cli

		work = tempfile.mkdtemp()
		self.addCleanup(shutil.rmtree, work)
		started, errors = os.path.join(work, "started"), os.path.join(work, "stderr")
		saved_stderr, restart = os.dup(2), cli.RESTART_BACKOFF
		cli.RESTART_BACKOFF = Backoff(base=0.1, factor=2.0, maximum=60.0, jitter=0)
		begun = time.monotonic()
		try:
			with open(errors, "w") as stderr:
				os.dup2(stderr.fileno(), 2)  # the children's tracebacks land on file descriptor 2
				code = cli._supervise(lambda remaining: crashing_child(started), 1, [], seconds=4)
		finally:
			os.dup2(saved_stderr, 2)
			os.close(saved_stderr)
			cli.RESTART_BACKOFF = restart
		elapsed = time.monotonic() - begun
		with open(started) as notes, open(errors) as stderr:
			starts, text = len(notes.readlines()), stderr.read()
		self.assertEqual(code, 1)
		self.assertLess(elapsed, 8, "restarted past --seconds")
		self.assertIn("RuntimeError: the consumer could not start", text, "why it died is printed")
		# Delays of 0.1, 0.2, 0.4, 0.8, 1.6 s: about 6 starts in 4 s; at a fixed 0.1 s, dozens.
		self.assertTrue(3 <= starts <= 8, f"{starts} starts in 4 s")
