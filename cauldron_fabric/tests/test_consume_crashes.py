"""A consumed event whose handler kills the site's consumer process is set aside, not retried for ever;
a request whose consumer is killed after its commit still gets its reply.

Each run is a real process (crash_consumer.py) on the site's consumer; the handler of one event
ends it with os._exit. The runs it did not survive are counted in the site's Redis.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.core.consumer import open_requester
from cauldron_fabric.core.consumer.messages import HANDLER_CRASHED
from cauldron_fabric.core.envelope import EventData
from cauldron_fabric.tests.test_consume import CHARGE, charge, group_name
from cauldron_fabric.tests.test_consume_support import dead_letters, publish
from cauldron_fabric.tests.utils import fabric_settings, start_broker


class TestConsumerCrashes(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		start_broker(cls, consumer_crash_limit=2, handler_user="Administrator")
		# Requests here ask for replies on "<topic>.replies", which responders refuse unless listed.
		settings = fabric_settings(allowed_reply_addresses=f"{cls.prefix}.*.replies")
		settings.__enter__()
		cls.addClassCleanup(settings.__exit__, None, None, None)

	def run_consumer(self, group: str, topic: str, poison: str) -> int:
		frappe.db.commit()
		arguments = [frappe.local.site, group, topic, CHARGE, poison]
		return subprocess.run(
			[sys.executable, "-m", "cauldron_fabric.tests.crash_consumer", *arguments],
			cwd=os.path.abspath(frappe.get_site_path("..")),
			capture_output=True,
			timeout=120,
		).returncode

	def test_an_event_that_kills_the_consumer_is_dead_lettered_at_the_limit_and_the_rest_flow(self):
		topic, group = f"{self.prefix}.{frappe.generate_hash(length=6)}", group_name("crashes")
		# One key, so one partition: "after" waits behind the poison.
		before, poison, after = (
			replace(charge(n), data=EventData("Charge", "CH-one", "created", {"amount": n}))
			for n in (1, 2, 3)
		)
		publish(self.broker.bootstrap, topic, [before, poison, after])
		exits = []
		while not exits or (exits[-1] == 70 and len(exits) < 4):
			exits.append(self.run_consumer(group, topic, poison.id))
		self.assertEqual(exits, [70, 70, 0], "two runs died, the third set the poison aside")
		frappe.db.rollback()
		handled = frappe.get_all(
			"ToDo", filters={"description": ("like", "crash-test %")}, pluck="description"
		)
		self.assertEqual(
			sorted(d for d in handled if d.split(" ")[1] in (before.id, poison.id, after.id)),
			sorted([f"crash-test {before.id}", f"crash-test {after.id}"]),
		)
		(letter,) = dead_letters(group)
		self.assertEqual((letter["event_id"], letter["log"]["reason"]), (poison.id, HANDLER_CRASHED))
		self.assertIn("stopped 2 times", letter["last_error"])
		counts = frappe.cache.keys(f"cauldron_fabric:{frappe.local.site}:starts:{group}:*")
		self.assertEqual(counts, [], "set aside, the event is no longer counted")

	def test_a_request_whose_consumer_is_killed_after_its_commit_gets_the_kept_reply(self):
		topic, group = f"{self.prefix}.{frappe.generate_hash(length=6)}", group_name("replay")
		requester = open_requester(
			f"kafka://{self.broker.bootstrap}",
			source="urn:test:requester",
			broker_options={"reply_topic": f"{topic}.replies"},
		)
		self.addCleanup(requester.close)
		answers = []
		asking = threading.Thread(
			target=lambda: answers.append(
				requester.request(CHARGE, {"kill_after_commit": True}, 90, target=topic)
			),
			daemon=True,
		)
		asking.start()
		# The first run commits the ToDo and the Processed Event, then SIGKILLs itself before replying.
		self.assertEqual(self.run_consumer(group, topic, "-"), -signal.SIGKILL)
		self.assertEqual(self.run_consumer(group, topic, "-"), 0)
		asking.join(30)
		self.assertEqual(len(answers), 1, "the requester got no reply")
		(reply,) = answers
		frappe.db.rollback()
		(mark,) = frappe.get_all(
			"Processed Event", filters={"consumer_group": group}, fields=["event_id", "replies"]
		)
		(kept,) = json.loads(mark.replies)
		self.assertEqual(reply.request.id, mark.event_id)
		self.assertEqual(reply.envelope.to_dict(), kept, "the reply the first run kept, sent again")
		todos = frappe.get_all("ToDo", filters={"description": f"crash-test {mark.event_id}"}, pluck="name")
		self.assertEqual(todos, [kept["data"]["payload"]["todo"]], "the request changed nothing twice")
