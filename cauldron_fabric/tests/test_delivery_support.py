"""Helpers of the delivery tests: subscriptions scoped to one test, running the worker, cleanup."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.delivery.worker import run_delivery_worker
from cauldron_fabric.testing.http_receiver import Receiver
from cauldron_fabric.tests.utils import fabric_settings

LOOPBACK = "127.0.0.0/8\n::1/128"


def marker() -> str:
	"""Returns a unique text that a test puts in its documents and filters its subscriptions on."""
	return "fabric-" + frappe.generate_hash(length=10)


def make_subscription(tag: str, **values: Any):
	"""Inserts a subscription for ToDo events whose description is ``tag`` (committed)."""
	doc = new_subscription(tag, **values)
	frappe.db.commit()
	return doc


def new_subscription(tag: str, **values: Any):
	"""Inserts a subscription for ToDo events whose description is ``tag``, uncommitted."""
	return frappe.get_doc(
		{
			"doctype": "Event Subscription",
			"subscription_name": f"{tag}-{frappe.generate_hash(length=4)}",
			"event_types": "todo.*",
			"condition": f'data.payload.doc.description == "{tag}"',
			"max_attempts": 3,
			"initial_delay": 0.1,
			"max_delay": 0.5,
			"jitter": 0,
			**values,
		}
	).insert()


def save_todo(tag: str) -> str:
	"""Inserts and commits a ToDo with ``tag`` as description; returns its name."""
	name = frappe.get_doc({"doctype": "ToDo", "description": tag}).insert().name
	frappe.db.commit()
	return name


def deliveries(subscription: str) -> list[dict[str, Any]]:
	"""Returns the subscription's deliveries, oldest first, as committed by the workers."""
	frappe.db.rollback()
	return frappe.db.sql(
		"""SELECT name, event_type, status, attempts, last_status_code, last_error, attempt_log, envelope
		FROM `tabEvent Delivery` WHERE subscription = %s ORDER BY name""",
		(subscription,),
		as_dict=True,
	)


def deliver(*subscriptions: str, timeout: float = 30) -> list[dict[str, Any]]:
	"""Runs the delivery worker until none of the subscriptions' deliveries is pending."""
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		run_delivery_worker(stop_when_idle=True, max_seconds=5)
		rows = [row for name in subscriptions for row in deliveries(name)]
		if rows and all(row.status != "Pending" for row in rows):
			return rows
		time.sleep(0.1)
	raise AssertionError(f"deliveries still pending after {timeout} s: {rows}")


def dead_letters(subscription: str) -> list[Any]:
	"""Returns the subscription's Delivery dead letters, oldest first."""
	frappe.db.rollback()
	names = frappe.get_all(
		"Dead Letter",
		filters={"source_type": "Delivery", "subscription": subscription},
		pluck="name",
		order_by="creation asc",
	)
	return [frappe.get_doc("Dead Letter", name) for name in names]


def remove_subscription(name: str) -> None:
	"""Deletes a subscription with its deliveries and dead letters (committed)."""
	frappe.db.rollback()
	frappe.db.delete("Event Delivery", {"subscription": name})
	frappe.db.delete("Dead Letter", {"subscription": name})
	if frappe.db.exists("Event Subscription", name):
		frappe.delete_doc("Event Subscription", name, ignore_permissions=True, force=True)
	frappe.db.commit()


def loopback_allowed():
	"""Allow-lists loopback for webhooks while the block runs (the receivers are local)."""
	return fabric_settings(webhook_allowed_networks=LOOPBACK)


def envelope_of(row: dict[str, Any]) -> dict[str, Any]:
	"""Returns the event a delivery row carries."""
	return json.loads(row["envelope"])


class DeliveryTestCase(FrappeTestCase):
	"""Runs as Administrator with a fresh tag; subscriptions made through it are removed after."""

	def setUp(self):
		frappe.set_user("Administrator")
		self.tag = marker()
		self.created: list[str] = []

	def tearDown(self):
		frappe.set_user("Administrator")
		for name in self.created:
			remove_subscription(name)

	def subscription(self, **values):
		doc = make_subscription(self.tag, **values)
		self.created.append(doc.name)
		return doc


class ReceiverCase(DeliveryTestCase):
	"""A DeliveryTestCase with loopback webhooks allowed and one HTTP receiver for the class."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		allow = loopback_allowed()
		allow.__enter__()
		cls.addClassCleanup(allow.__exit__, None, None, None)
		cls.receiver = Receiver().start()
		cls.addClassCleanup(cls.receiver.stop)


# Process A of the race: saves a subscription, waits for the word, then commits with its Redis
# connection going through the proxy.
COMMIT_THROUGH_PROXY = """
import sys
import frappe
from frappe.utils.redis_wrapper import RedisWrapper

site, proxy_url, name = sys.argv[1:4]
frappe.init(site=site, sites_path=".")
frappe.connect()
frappe.cache = RedisWrapper.from_url(proxy_url)
frappe.set_user("Administrator")
doc = frappe.get_doc("Event Subscription", name)
doc.max_attempts = 4
doc.save()
print("saved", flush=True)
sys.stdin.readline()
frappe.db.commit()
frappe.destroy()
"""


class HeldRedisWrite:
	"""A TCP proxy to the site's Redis that can hold the next write until ``release`` is set.

	Everything else passes at once, so the process behind it reads the database and Redis as
	quickly as any other; only that one write reaches Redis after another process's writes.
	"""

	WRITES = (b"SET", b"INCR", b"INCRBY", b"EVAL", b"EVALSHA")

	def __init__(self):
		from urllib.parse import urlsplit

		target = urlsplit(frappe.conf.redis_cache or "redis://127.0.0.1:6379")
		self.target = (target.hostname, target.port or 6379)
		self.holding, self.held, self.release = False, threading.Event(), threading.Event()
		self.server = socket.create_server(("127.0.0.1", 0))
		self.url = f"redis://127.0.0.1:{self.server.getsockname()[1]}{target.path}"

	def __enter__(self):
		threading.Thread(target=self.accept, daemon=True).start()
		return self

	def __exit__(self, *exc):
		self.release.set()
		self.server.close()

	def hold_next_write(self) -> None:
		self.holding = True

	def accept(self) -> None:
		while True:
			try:
				client, _ = self.server.accept()
			except OSError:
				return
			upstream = socket.create_connection(self.target)
			threading.Thread(target=self.pipe, args=(client, upstream, True), daemon=True).start()
			threading.Thread(target=self.pipe, args=(upstream, client, False), daemon=True).start()

	def pipe(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
		try:
			while chunk := source.recv(65536):
				if requests and self.holding and self.is_write(chunk):
					self.holding = False
					self.held.set()
					self.release.wait(30)
				sink.sendall(chunk)
		except OSError:
			pass
		finally:
			sink.close()

	def is_write(self, chunk: bytes) -> bool:
		parts = chunk.split(b"\r\n")
		return len(parts) > 2 and parts[2].upper() in self.WRITES
