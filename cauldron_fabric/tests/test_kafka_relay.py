"""From a real site to a real Kafka-protocol broker: order, outage, the relay command, the API."""

from __future__ import annotations

import json
import pickle
import signal
import socket
import threading
import time
from unittest.mock import patch

import frappe
import redis
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from frappe.tests.utils import FrappeTestCase
from frappe.utils import add_days, add_to_date, now_datetime

from cauldron_fabric.api import events as events_api
from cauldron_fabric.api import settings as settings_api
from cauldron_fabric.core.outbox.statements import EVENT_COLUMNS
from cauldron_fabric.emit.scheduled import relay_pending_events
from cauldron_fabric.services import relay as relay_module
from cauldron_fabric.services.heartbeats import process_name, safety_net_name
from cauldron_fabric.services.relay import (
	STATUS_KEY,
	relay_channel,
	run_relay_for,
	site_db_connector,
)
from cauldron_fabric.services.status import relay_statuses
from cauldron_fabric.testing.kafka_broker import KafkaBroker, free_port, read_topic
from cauldron_fabric.tests.utils import (
	ORDER,
	assert_usage_error,
	ensure_test_doctypes,
	fabric_settings,
	last_seq,
	lose_connection_then_save_todo,
	new_order,
	start_broker,
	start_fabric_command,
)


def event_status(entity_id: str) -> list[tuple]:
	frappe.db.rollback()  # read what other connections committed
	return frappe.db.sql(
		"SELECT event_type, status, topic, last_error FROM `tabEvent Log` WHERE entity_id = %s ORDER BY name",
		(entity_id,),
	)


def relay_until_idle(seconds: float = 30) -> None:
	run_relay_for(max_seconds=seconds, stop_when_idle=True)
	frappe.db.rollback()


class TestPublishingToKafka(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_test_doctypes()
		start_broker(cls, prefix="fabrictest")

	def setUp(self):
		frappe.set_user("Administrator")
		relay_until_idle()  # leftovers of other tests must not mix with this one's events

	def test_committed_lifecycle_reaches_kafka_in_order_and_a_rollback_never_does(self):
		order = new_order("to kafka")
		frappe.db.commit()
		order.title = "to kafka v2"
		order.save()
		order.submit()
		frappe.db.commit()
		rolled_back = (
			f"rolled back {frappe.generate_hash(length=8)}"  # other tests' leftovers may say "rolled back"
		)
		new_order(rolled_back)
		frappe.db.rollback()
		order.reload()
		order.cancel()
		frappe.db.commit()
		renamed = frappe.rename_doc(ORDER, order.name, order.name + "-k")
		frappe.db.commit()
		frappe.delete_doc(ORDER, renamed)
		frappe.db.commit()
		relay_until_idle()

		ours = {f"{ORDER}/{order.name}": 4, f"{ORDER}/{renamed}": 2}

		def all_ours_arrived(received):
			keys = [m.key().decode() for m in received]
			return all(keys.count(key) >= count for key, count in ours.items())

		# The topic may also hold other tests' leftover events; wait for this test's ones.
		messages = read_topic(
			self.broker.bootstrap, f"{self.prefix}.fabric_test_order", 6, until=all_ours_arrived
		)
		by_key: dict[str, list[str]] = {}
		for message in messages:
			by_key.setdefault(message.key().decode(), []).append(json.loads(message.value())["type"])
		self.assertEqual(
			by_key[f"{ORDER}/{order.name}"],
			[
				"fabric_test_order.created",
				"fabric_test_order.updated",
				"fabric_test_order.submitted",
				"fabric_test_order.cancelled",
			],
		)
		self.assertEqual(
			by_key[f"{ORDER}/{renamed}"], ["fabric_test_order.renamed", "fabric_test_order.deleted"]
		)
		titles = {json.loads(m.value())["data"]["payload"]["doc"]["title"] for m in messages}
		self.assertNotIn(rolled_back, titles)

		first = messages[0]
		sdk_event = ce_kafka.from_binary(
			ce_kafka.KafkaMessage(headers=dict(first.headers()), key=first.key(), value=first.value()),
			JSONFormat(),
		)
		self.assertEqual(sdk_event.get_id(), json.loads(first.value())["id"])
		self.assertEqual(sdk_event.get_extension("tenantid"), frappe.local.site)

		key = f"{ORDER}/{order.name}".encode()

		def both_arrived(received):
			return len([m for m in received if m.key() == key]) >= 2

		business = read_topic(self.broker.bootstrap, f"{self.prefix}.business", 2, until=both_arrived)
		self.assertEqual(
			[json.loads(m.value())["data"]["action"] for m in business if m.key() == key],
			["submitted", "cancelled"],
		)
		rows = event_status(order.name) + event_status(renamed)
		self.assertEqual({row[1] for row in rows}, {"Published"})

	def test_a_commit_wakes_the_relays_once_and_a_rollback_never_does(self):
		pubsub = frappe.cache.pubsub(ignore_subscribe_messages=True)
		pubsub.subscribe(relay_channel())
		try:
			self.assertIsNone(pubsub.get_message(timeout=0.2))  # subscribed, nothing waiting
			for n in range(3):
				frappe.get_doc({"doctype": "ToDo", "description": f"wake {n}"}).insert()
			frappe.db.rollback()
			self.assertIsNone(pubsub.get_message(timeout=1), "a rollback woke the relays")
			todos = [
				frappe.get_doc({"doctype": "ToDo", "description": f"wake {n}"}).insert() for n in range(3)
			]
			frappe.db.commit()
			woken = [pubsub.get_message(timeout=5), pubsub.get_message(timeout=1)]
			self.assertEqual([message and message["data"] for message in woken], [b"1", None])
		finally:
			pubsub.close()
		for todo in todos:
			frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

	def test_a_commit_refused_by_a_before_commit_callback_leaves_later_commits_waking_the_relays(self):
		# Frappe drops the after-rollback callbacks before it runs the before-commit ones, so a
		# commit that one of them refuses is rolled back without the fabric being told.
		def refuse() -> None:
			raise frappe.ValidationError("refused by a before_commit callback")

		pubsub = frappe.cache.pubsub(ignore_subscribe_messages=True)
		pubsub.subscribe(relay_channel())
		try:
			self.assertIsNone(pubsub.get_message(timeout=0.2))  # subscribed, nothing waiting
			frappe.get_doc({"doctype": "ToDo", "description": "refused commit"}).insert()
			frappe.db.before_commit.add(refuse)
			with self.assertRaises(frappe.ValidationError):
				frappe.db.commit()
			frappe.db.rollback()
			self.assertIsNone(pubsub.get_message(timeout=1), "a refused commit woke the relays")
			todo = frappe.get_doc({"doctype": "ToDo", "description": "after a refused commit"}).insert()
			frappe.db.commit()
			woken = pubsub.get_message(timeout=5)
			self.assertEqual(woken and woken["data"], b"1", "the next commit did not wake the relays")
		finally:
			pubsub.close()
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

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
		self.assertIn("fabric relay stopped", stderr)
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

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

	def test_broker_outage_never_fails_a_save_and_events_wait_until_it_is_back(self):
		dead = f"127.0.0.1:{free_port()}"
		with fabric_settings(bootstrap_servers=dead, message_timeout_ms=1000):
			todo = frappe.get_doc({"doctype": "ToDo", "description": "during outage"}).insert()
			frappe.db.commit()
			run_relay_for(max_seconds=4)
			((_type, status, topic, error),) = event_status(todo.name)
			self.assertEqual(status, "Pending")
			self.assertIn(f"Kafka at {dead}", error)
			self.assertEqual(topic, f"{self.prefix}.todo")
		frappe.db.sql("UPDATE `tabEvent Log` SET next_attempt_at = NULL WHERE entity_id = %s", (todo.name,))
		frappe.db.commit()
		relay_until_idle()
		self.assertEqual(event_status(todo.name)[0][1], "Published")
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

	def test_a_relay_that_finds_the_broker_back_while_idle_no_longer_reports_the_outage(self):
		# The error of a failed publish was cleared only by a later successful one: a relay that
		# outlived an outage with nothing due (its events waiting out their backoff, or taken by
		# another relay) showed the outage as its current error for as long as no event came.
		broker = KafkaBroker().start()  # this test's own, to stop and start again
		self.addCleanup(broker.stop)
		name = "fabric-test-recovery"
		self.addCleanup(frappe.cache.hdel, STATUS_KEY, name)
		todo = frappe.get_doc({"doctype": "ToDo", "description": "outage, then idle"}).insert()
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "ToDo", todo.name)
		connect, seen, later = site_db_connector(), {}, add_to_date(now_datetime(), hours=1)
		# The status as another process reads it (frappe.cache is not bound in a thread).
		key, redis_client = frappe.cache.make_key(STATUS_KEY), redis.Redis.from_url(frappe.conf.redis_cache)
		self.addCleanup(redis_client.close)

		def reported_error():
			raw = redis_client.hget(key, name)
			return json.loads(pickle.loads(raw))["last_error"] if raw else None

		def outage_ends():
			deadline = time.monotonic() + 15
			while not reported_error() and time.monotonic() < deadline:
				time.sleep(0.1)  # until the relay has failed to publish the event
			seen["during"] = reported_error()
			db = connect()
			with db.cursor() as cursor:  # the event waits out a long backoff: nothing is due
				cursor.execute(
					"UPDATE `tabEvent Log` SET next_attempt_at = %s WHERE entity_id = %s",
					(later, todo.name),
				)
			db.commit()
			db.close()
			broker.start()
			seen["back"] = time.monotonic()

		with fabric_settings(bootstrap_servers=broker.bootstrap, message_timeout_ms=1000):
			broker.stop()
			recovery = threading.Thread(target=outage_ends)
			recovery.start()
			run_relay_for(max_seconds=30, name=name)
			recovery.join()
		status = json.loads(frappe.cache.hget(STATUS_KEY, name))
		self.assertIn("back", seen, "the broker was started again")
		self.assertIn(f"Kafka at {broker.bootstrap}", seen["during"] or "", "the outage was reported")
		self.assertEqual(event_status(todo.name)[0][1], "Pending")
		self.assertIsNone(status["last_error"], "the broker is back: the outage is not current any more")
		frappe.db.sql("UPDATE `tabEvent Log` SET next_attempt_at = NULL WHERE entity_id = %s", (todo.name,))
		frappe.db.commit()
		relay_until_idle()
		self.assertEqual(event_status(todo.name)[0][1], "Published")

	def test_a_setting_kafka_refuses_is_reported_and_the_relay_waits_for_a_fix(self):
		# A CA stored without the form's check (set_single_value, or saved before it existed)
		# made librdkafka refuse the producer (built first when topics are not auto-created):
		# ConfigurationError out of the relay, which stopped with a traceback, and supervisor
		# restarted it into the same error, for ever, with nothing in Desk saying why.
		todo = frappe.get_doc({"doctype": "ToDo", "description": "bad ca"}).insert()
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "ToDo", todo.name)
		broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----"
		frappe.db.set_single_value(
			"Fabric Settings", {"security_protocol": "SSL", "ssl_ca": broken, "auto_create_topics": 0}
		)
		frappe.db.commit()
		try:
			run_relay_for(max_seconds=3, name="fabric-test-misconfigured")
			status = json.loads(frappe.cache.hget(STATUS_KEY, "fabric-test-misconfigured"))
		finally:
			frappe.cache.hdel(STATUS_KEY, "fabric-test-misconfigured")
			frappe.db.set_single_value(
				"Fabric Settings", {"security_protocol": "PLAINTEXT", "ssl_ca": None, "auto_create_topics": 1}
			)
			frappe.db.commit()
		self.assertIn("ssl.ca.pem", status["last_error"])
		self.assertEqual(event_status(todo.name)[0][1], "Pending")
		frappe.db.sql("UPDATE `tabEvent Log` SET next_attempt_at = NULL WHERE entity_id = %s", (todo.name,))
		frappe.db.commit()
		relay_until_idle()
		self.assertEqual(event_status(todo.name)[0][1], "Published")

	def test_z_a_lost_site_database_connection_delays_the_relay_without_stopping_it(self):
		# Named to run last: it kills this test process's own database connection.
		description = f"after a lost connection {frappe.generate_hash(length=6)}"
		saver = lose_connection_then_save_todo(description)
		with patch.object(relay_module, "SETTINGS_RECHECK_SECONDS", 0.5):
			run_relay_for(max_seconds=10)
		saver.join()
		(todo,) = frappe.get_all("ToDo", filters={"description": description}, pluck="name")
		self.assertEqual([row[1] for row in event_status(todo)], ["Published"])

	def test_api_lists_events_with_delivery_status_and_requeues_failed_ones(self):
		todo = frappe.get_doc({"doctype": "ToDo", "description": "api"}).insert()
		frappe.db.commit()
		relay_until_idle()
		listed = events_api.list_events(entity="ToDo", entity_id=todo.name)["events"]
		self.assertEqual([e["status"] for e in listed], ["Published"])
		self.assertEqual(listed[0]["topic"], f"{self.prefix}.todo")
		event_id = listed[0]["envelope"]["id"]
		self.assertEqual(events_api.get_event(event_id)["envelope"]["data"]["entityId"], todo.name)
		self.assertTrue(events_api.list_events(event_type="todo.*", limit=1)["events"])

		frappe.db.sql("UPDATE `tabEvent Log` SET status = 'Failed' WHERE event_id = %s", (event_id,))
		self.assertEqual(events_api.requeue([event_id]), {"requeued": 1})
		frappe.db.commit()
		relay_until_idle()
		self.assertEqual(events_api.get_event(event_id)["status"], "Published")
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

	def test_connection_test_reports_what_it_found(self):
		report = settings_api.test_connection()
		self.assertTrue(report["ok"], report)
		self.assertIn("broker(s)", report["summary"])
		with fabric_settings(bootstrap_servers=f"127.0.0.1:{free_port()}"):
			report = settings_api.test_connection()
		self.assertFalse(report["ok"])
		self.assertIn("No Kafka broker answered", report["summary"])


class TestEventLogTable(FrappeTestCase):
	def test_the_doctype_has_every_column_the_outbox_writes(self):
		columns = set(frappe.db.get_table_columns("Event Log"))
		self.assertLessEqual(set(EVENT_COLUMNS), columns)
		indexes = {row[2] for row in frappe.db.sql("SHOW INDEX FROM `tabEvent Log`")}
		self.assertLessEqual({"fabric_status_seq", "fabric_key_seq"}, indexes)

	def test_events_are_immutable_through_the_orm(self):
		todo = frappe.get_doc({"doctype": "ToDo", "description": "immutable"}).insert()
		name = frappe.db.get_value("Event Log", {"entity_id": todo.name})
		event = frappe.get_doc("Event Log", name)
		event.event_type = "forged.event"
		self.assertRaises(frappe.ValidationError, event.save)
		self.assertGreater(name, 0)
		self.assertGreater(last_seq(), 0)
