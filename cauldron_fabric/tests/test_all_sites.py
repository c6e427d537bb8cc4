"""``bench --site all fabric …`` on a real bench: one process per site with the app, not the first site only.

Frappe hands a command run with ``--site all`` every site of the bench, and the fabric's
commands used to serve the first of them alone. The commands run from a sites folder of their
own, holding this site (linked) and a site folder whose database cannot be read, standing in
for a broken site: the bench's other sites, a developer's say, are never relayed or delivered
for by a test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import frappe

from cauldron_fabric.services import all_sites
from cauldron_fabric.services.status import relay_statuses
from cauldron_fabric.tests.test_delivery_support import make_subscription
from cauldron_fabric.tests.test_kafka_relay_support import KafkaRelayCase, event_status
from cauldron_fabric.tests.utils import fabric_settings

UNREADABLE = "fabric-unreadable.localhost"


def sites_folder() -> str:
	return os.path.abspath(frappe.get_site_path(".."))


def own_sites_folder() -> str:
	"""Returns a new sites folder with this site and the bench's configuration linked in.

	Frappe takes no symbolic link for a site (its assets folder is one): the site is a folder of
	its own there, with the site's configuration linked in.
	"""
	bench = tempfile.mkdtemp(prefix="fabric-bench-")
	folder = os.path.join(bench, "sites")
	os.makedirs(os.path.join(bench, "logs"))  # Frappe logs into the sites folder's ../logs
	os.makedirs(folder)
	for name in ("apps.txt", "apps.json", "common_site_config.json"):
		if os.path.exists(os.path.join(sites_folder(), name)):
			os.symlink(os.path.join(sites_folder(), name), os.path.join(folder, name))
	os.makedirs(os.path.join(folder, frappe.local.site, "logs"))
	os.symlink(
		os.path.abspath(frappe.get_site_path("site_config.json")),
		os.path.join(folder, frappe.local.site, "site_config.json"),
	)
	unreadable = os.path.join(folder, UNREADABLE)
	os.makedirs(os.path.join(unreadable, "logs"))
	with open(os.path.join(unreadable, "site_config.json"), "w") as config:
		json.dump({"db_name": "fabric_no_such_db", "db_password": "not-the-password"}, config)
	return folder


def start_for_all_sites(folder: str, *args: str) -> subprocess.Popen:
	return subprocess.Popen(
		all_sites.bench_command("all", "fabric", *args),
		cwd=folder,
		stdout=subprocess.PIPE,
		stderr=subprocess.PIPE,
		text=True,
	)


def alive(pid: int) -> bool:
	try:
		os.kill(pid, 0)
	except ProcessLookupError:
		return False
	return True


class TestAllSites(KafkaRelayCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.sites = own_sites_folder()
		cls.addClassCleanup(shutil.rmtree, os.path.dirname(cls.sites), True)

	def test_relay_for_all_sites_runs_one_relay_process_per_site_and_stops_them_all(self):
		parent = start_for_all_sites(self.sites, "relay", "--seconds", "90")
		site = frappe.local.site
		try:
			deadline, child = time.monotonic() + 60, None
			while time.monotonic() < deadline and child is None:
				names = [relay["name"] for relay in relay_statuses()]
				pids = [int(n.rsplit(":", 1)[1]) for n in names if n.rsplit(":", 1)[-1].isdigit()]
				child = next((pid for pid in pids if pid != parent.pid and alive(pid)), None)
				time.sleep(0.2)
			self.assertIsNotNone(child, "no relay process reported for this site")
			todo = frappe.get_doc({"doctype": "ToDo", "description": "all sites"}).insert()
			frappe.db.commit()
			self.addCleanup(frappe.db.commit)
			self.addCleanup(frappe.delete_doc, "ToDo", todo.name)
			deadline = time.monotonic() + 15
			while time.monotonic() < deadline and event_status(todo.name)[0][1] != "Published":
				time.sleep(0.05)
			self.assertEqual(
				event_status(todo.name)[0][1], "Published", "no relay published this site's event"
			)
		finally:
			parent.send_signal(signal.SIGTERM)
			_, stderr = parent.communicate(timeout=60)
		self.assertEqual(parent.returncode, 0, stderr)
		self.assertIn("fabric relay for every site with cauldron_fabric", stderr)
		# Each child's lines led by its site (before, several sites' output could not be told apart).
		self.assertEqual(
			re.findall(r"^(\S+) \| fabric relay for (\S+) started$", stderr, re.M), [(site, site)]
		)
		self.assertIn(f"fabric relay for {site} stopped", stderr)
		self.assertNotIn(UNREADABLE, stderr)  # no process for a site that cannot be read
		self.assertTrue(stderr.rstrip().endswith("fabric relay for every site stopped"), stderr[-500:])
		self.assertFalse(alive(child), "the site's relay outlived the command")
		self.assertNotIn(
			child, [int(r["name"].rsplit(":", 1)[1]) for r in relay_statuses() if r["name"][-1:].isdigit()]
		)
		self.assertNotIn("Traceback", stderr)

	def test_status_for_all_sites_reports_each_site_and_why_one_cannot_be_read(self):
		process = start_for_all_sites(self.sites, "status")
		stdout, stderr = process.communicate(timeout=120)
		self.assertEqual(process.returncode, 0, stderr)
		report = json.loads(stdout)
		self.assertEqual(report[frappe.local.site]["site"], frappe.local.site)
		self.assertIn("pending", report[frappe.local.site]["outbox"])
		self.assertIn("the site could not be read", report[UNREADABLE]["error"])

	def test_codegen_for_all_sites_is_refused_with_what_to_pass(self):
		process = start_for_all_sites(self.sites, "codegen", "--out", "/tmp/fabric-codegen-all")
		_, stderr = process.communicate(timeout=120)
		self.assertEqual(process.returncode, 2, stderr)
		self.assertIn("pass that site with --site, not all", stderr)
		self.assertFalse(os.path.exists("/tmp/fabric-codegen-all/cauldron_events.py"))

	def test_deliver_for_all_sites_passes_its_options_on_to_each_sites_worker(self):
		self.assertEqual(
			all_sites.forwarded(batch_size=5, group=None, topics=["a.b", "c.d"], pattern=""),
			["--batch-size", "5", "--topics", "a.b,c.d"],
		)
		# A worker runs for a site with an enabled subscription (one that matches no event here).
		subscription = make_subscription(
			f"all-sites-{frappe.generate_hash(length=6)}", webhook_url="https://hooks.example.com/x"
		)
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "Event Subscription", subscription.name)
		process = start_for_all_sites(self.sites, "deliver", "--batch-size", "7", "--seconds", "12")
		_, stderr = process.communicate(timeout=120)
		self.assertEqual(process.returncode, 0, stderr)
		self.assertIn(f"fabric delivery worker for {frappe.local.site} started", stderr)
		self.assertIn(f"fabric delivery worker for {frappe.local.site} stopped", stderr)
		self.assertNotIn("Traceback", stderr)

	def test_a_site_that_publishes_to_no_broker_gets_no_relay_process(self):
		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			process = start_for_all_sites(self.sites, "relay", "--seconds", "8")
			_, stderr = process.communicate(timeout=120)
		self.assertEqual(process.returncode, 0, stderr)
		self.assertIn("fabric relay for every site with cauldron_fabric", stderr)
		self.assertNotIn(f"fabric relay for {frappe.local.site} started", stderr)
