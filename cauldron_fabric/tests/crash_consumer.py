"""A site consumer whose handler kills its process on one event, for test_consume_crashes.

Usage, from the bench's sites folder:
    python -m cauldron_fabric.tests.crash_consumer SITE GROUP TOPIC EVENT_TYPE POISON_EVENT_ID

Handles EVENT_TYPE by inserting a ToDo ("crash-test <event id>"), except the poison event, whose
handler ends the process at once (as an out-of-memory kill or a crash in C code would). A
request gets the reply ``{"todo": <its name>}``; one whose payload says ``kill_after_commit``
SIGKILLs the process right after the event's commit, before the reply goes out. Exits 0 when
the topic has nothing left.
"""

from __future__ import annotations

import os
import signal
import sys

import frappe

from cauldron_fabric.consume.runner import run_consumer_for
from cauldron_fabric.tests.test_consume_support import FAST_JOIN


def main() -> None:
	site, group, topic, event_type, poison = sys.argv[1:6]
	frappe.init(site=site, sites_path=".")
	frappe.connect()

	def handle(envelope, context):
		if envelope.id == poison:
			os._exit(70)
		todo = frappe.get_doc({"doctype": "ToDo", "description": f"crash-test {envelope.id}"}).insert()
		if envelope.data.payload.get("kill_after_commit"):
			frappe.db.after_commit.add(lambda: os.kill(os.getpid(), signal.SIGKILL))
		if context.is_request:
			context.reply({"todo": todo.name})

	try:
		run_consumer_for(
			group,
			[topic],
			extra_handlers={event_type: handle},
			stop_when_idle=True,
			max_seconds=60,
			broker_options=FAST_JOIN,
		)
	finally:
		frappe.destroy()


if __name__ == "__main__":
	main()
