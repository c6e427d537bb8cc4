"""The site's consumer keeps exactly-once effects, causes, permissions and its process alive.

Real broker (start_broker), real consumer (run_consumer_for through consume()), tracking in
Processed Event; a second connection stands in for another process (Desk, an admin, MariaDB).
"""

from __future__ import annotations

import threading
import time
from unittest.mock import patch

import frappe
from frappe.tests.utils import FrappeTestCase
from redis import Redis

from cauldron_fabric.consume import runner
from cauldron_fabric.consume.runner import run_consumer_for
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.services.relay import site_db_connector
from cauldron_fabric.testing.events import document_event
from cauldron_fabric.tests.test_consume_support import FAST_JOIN, consume, dead_letters, publish
from cauldron_fabric.tests.utils import start_broker

STEP = "fabric_review_test.step.created"
HANDLER_USER = "fabric-review-handler@example.com"


def step(**payload) -> Envelope:
	return document_event(
		"Step", "S-1", "created", payload, type=STEP, source="urn:cauldron:review", user=None, tenant=None
	)


def todos(text: str) -> int:
	return frappe.db.count("ToDo", {"description": text})


def run_for(group: str, topic: str, seconds: float, handler, should_stop=lambda: False) -> object:
	frappe.db.commit()
	counts = run_consumer_for(
		group=group,
		topics=[topic],
		max_seconds=seconds,
		should_stop=should_stop,
		broker_options=FAST_JOIN,
		extra_handlers={STEP: handler},
	)
	frappe.db.rollback()
	return counts


def on_own_connection(connect, *statements: str) -> None:
	"""Runs statements on a connection of their own (another process, as far as the consumer sees)."""
	connection = connect()
	try:
		with connection.cursor() as cursor:
			for statement in statements:
				cursor.execute(statement)
		connection.commit()
	finally:
		connection.close()


def found_on_own_connection(connect, query: str, params=()) -> bool:
	"""Tells whether ``query`` finds a row that another process committed."""
	connection = connect()
	try:
		with connection.cursor() as cursor:
			cursor.execute(query, params)
			return cursor.fetchone() is not None
	finally:
		connection.close()


def until(condition, every: float = 0.5):
	"""Returns a should_stop that asks ``condition()`` at most every ``every`` seconds."""
	asked = [0.0]

	def should_stop() -> bool:
		if time.monotonic() - asked[0] < every:
			return False
		asked[0] = time.monotonic()
		return condition()

	return should_stop


class TestConsumerIntegrity(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		start_broker(cls, consumer_max_attempts=3, handler_user="Administrator")

	def setUp(self):
		frappe.set_user("Administrator")
		self.topic = f"{self.prefix}.{frappe.generate_hash(length=6)}"
		self.group = f"integrity-{frappe.generate_hash(length=6)}"

	def test_a_handler_that_commits_then_fails_is_retried_whole(self):
		event = step()

		def handler(envelope, context):
			frappe.get_doc({"doctype": "ToDo", "description": f"A {envelope.id}"}).insert()
			frappe.db.commit()  # as some Frappe code does
			frappe.get_doc({"doctype": "ToDo", "description": f"B {envelope.id}"}).insert()
			if context.attempt == 1:
				raise RuntimeError("fails after committing")

		publish(self.broker.bootstrap, self.topic, [event])
		counts = consume(self.group, [self.topic], extra_handlers={STEP: handler})
		self.assertEqual((counts.retried, counts.processed, counts.duplicates), (1, 1, 0))
		self.assertEqual((todos(f"A {event.id}"), todos(f"B {event.id}")), (1, 1))

	def test_a_handler_that_rolls_back_keeps_the_mark_so_a_redelivery_changes_nothing(self):
		event = step()

		def handler(envelope, context):
			frappe.get_doc({"doctype": "ToDo", "description": f"A {envelope.id}"}).insert()
			frappe.db.rollback()  # as Frappe code that recovers from an error does
			frappe.get_doc({"doctype": "ToDo", "description": f"B {envelope.id}"}).insert()

		publish(self.broker.bootstrap, self.topic, [event, event])  # the second is a redelivery
		counts = consume(self.group, [self.topic], extra_handlers={STEP: handler})
		self.assertEqual((counts.processed, counts.duplicates), (1, 1))
		self.assertEqual((todos(f"A {event.id}"), todos(f"B {event.id}")), (0, 1))

	def test_events_recorded_at_commit_carry_the_consumed_event_as_cause(self):
		contact = frappe.get_doc(
			{
				"doctype": "Contact",
				"first_name": "Review " + frappe.generate_hash(length=4),
				"email_ids": [{"email_id": f"{frappe.generate_hash(length=6)}@example.com", "is_primary": 1}],
			}
		).insert()
		frappe.db.commit()
		events = [step(), step()]

		def handler(envelope, context):
			# A child row changed on its own: its parent's update is recorded at commit.
			row = frappe.get_doc("Contact", contact.name).email_ids[0]
			row.db_set("email_id", f"{envelope.id[-8:]}@example.com")

		publish(self.broker.bootstrap, self.topic, events)
		consume(self.group, [self.topic], extra_handlers={STEP: handler})
		logged = frappe.get_all(
			"Event Log",
			filters={"event_type": "contact.updated", "entity_id": contact.name},
			fields=["causation_id", "correlation_id"],
		)
		self.assertEqual(
			{(e.causation_id, e.correlation_id) for e in logged},
			{(e.id, e.metadata.correlation_id) for e in events},
		)

	def test_a_role_taken_from_the_handler_user_counts_from_the_next_event(self):
		if not frappe.db.exists("User", HANDLER_USER):
			frappe.get_doc(
				{"doctype": "User", "email": HANDLER_USER, "first_name": "Review", "send_welcome_email": 0}
			).insert(ignore_permissions=True)
		frappe.get_doc("User", HANDLER_USER).add_roles("Website Manager")
		frappe.db.set_single_value("Fabric Settings", "handler_user", HANDLER_USER)
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.set_single_value, "Fabric Settings", "handler_user", "Administrator")
		first, second = step(), step()

		def handler(envelope, context):
			frappe.get_doc({"doctype": "Blog Category", "title": f"review {envelope.id[-8:]}"}).insert()

		def first_done() -> bool:
			return found_on_own_connection(
				connect, "SELECT 1 FROM `tabBlog Category` WHERE title = %s", (f"review {first.id[-8:]}",)
			)

		def revoke_then_publish():
			deadline = time.monotonic() + 20
			while not first_done() and time.monotonic() < deadline:
				time.sleep(0.2)  # until the first event's effect is committed
			on_own_connection(
				connect,
				f"DELETE FROM `tabHas Role` WHERE parent = '{HANDLER_USER}' AND role = 'Website Manager'",
			)
			redis.hdel(roles_key, HANDLER_USER)  # as User.remove_roles does
			publish(self.broker.bootstrap, self.topic, [second])

		connect = site_db_connector()  # frappe.db and frappe.cache are bound to this thread
		redis, roles_key = Redis.from_url(frappe.conf.redis_cache), frappe.cache.make_key("roles")
		publish(self.broker.bootstrap, self.topic, [first])
		threading.Thread(target=revoke_then_publish, daemon=True).start()
		second_refused = until(  # then until the second is a dead letter (at most 30 s)
			lambda: found_on_own_connection(
				connect, "SELECT 1 FROM `tabDead Letter` WHERE event_id = %s", (second.id,)
			)
		)
		counts = run_for(self.group, self.topic, 30, handler, second_refused)
		self.assertEqual((counts.processed, counts.dead_lettered), (1, 1))
		self.assertTrue(frappe.db.exists("Blog Category", {"title": f"review {first.id[-8:]}"}))
		self.assertFalse(frappe.db.exists("Blog Category", {"title": f"review {second.id[-8:]}"}))
		(letter,) = dead_letters(self.group)
		self.assertEqual(letter.log["reason"], "handler-refused")

	def test_a_running_consumer_runs_handlers_as_the_run_handlers_as_user_the_settings_name_now(self):
		# As the delivery worker does within its settings recheck: an admin replacing the user
		# (Administrator by one with fewer permissions) must not wait for a restart.
		if not frappe.db.exists("User", HANDLER_USER):
			frappe.get_doc(
				{"doctype": "User", "email": HANDLER_USER, "first_name": "Review", "send_welcome_email": 0}
			).insert(ignore_permissions=True)
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.set_single_value, "Fabric Settings", "handler_user", "Administrator")
		first, second = step(), step()
		users: list[str] = []

		def handler(envelope, context):
			users.append(frappe.session.user)

		def change_the_user_then_publish():
			deadline = time.monotonic() + 20
			while not users and time.monotonic() < deadline:
				time.sleep(0.1)
			on_own_connection(  # an admin saving Fabric Settings, in another process
				connect,
				f"UPDATE `tabSingles` SET value = '{HANDLER_USER}' WHERE doctype = 'Fabric Settings' AND field = 'handler_user'",
			)
			time.sleep(3)  # past the consumer's settings recheck (1 s here)
			publish(self.broker.bootstrap, self.topic, [second])

		connect = site_db_connector()  # frappe.db is this thread's
		publish(self.broker.bootstrap, self.topic, [first])
		threading.Thread(target=change_the_user_then_publish, daemon=True).start()
		frappe.db.commit()
		with patch.object(runner, "SETTINGS_RECHECK_SECONDS", 1):
			run_consumer_for(
				group=self.group,
				topics=[self.topic],
				max_seconds=40,
				should_stop=lambda: len(users) >= 2,
				broker_options=FAST_JOIN,
				extra_handlers={STEP: handler},
			)
		frappe.db.rollback()
		self.assertEqual(users, ["Administrator", HANDLER_USER])

	def test_z_a_connection_lost_while_idle_does_not_stop_the_consumer(self):
		# Named to run last: it kills this test process's own database connection.
		event = step()
		mine = frappe.db.sql("SELECT CONNECTION_ID()")[0][0]
		connect = site_db_connector()  # frappe.db is this thread's

		handled = []

		def handler(envelope, context):
			frappe.get_doc({"doctype": "ToDo", "description": f"after kill {envelope.id}"}).insert()
			handled.append(envelope.id)

		def kill_then_publish():
			time.sleep(6)
			on_own_connection(
				connect, f"KILL {mine}"
			)  # a user may kill its own connections; so may wait_timeout
			time.sleep(3)
			publish(self.broker.bootstrap, self.topic, [event])

		threading.Thread(target=kill_then_publish, daemon=True).start()
		with patch.object(runner, "SETTINGS_RECHECK_SECONDS", 1):
			counts = run_for(self.group, self.topic, 25, handler, lambda: bool(handled))
		self.assertEqual(counts.processed, 1)
		self.assertEqual(todos(f"after kill {event.id}"), 1)
