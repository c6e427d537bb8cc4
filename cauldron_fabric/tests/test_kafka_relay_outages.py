"""A site's relay through broker outages, settings Kafka refuses and a lost database connection."""

from __future__ import annotations

import json
import pickle
import threading
import time
from unittest.mock import patch

import frappe
import redis
from frappe.utils import add_to_date, now_datetime

from cauldron_fabric.services import relay as relay_module
from cauldron_fabric.services.relay import STATUS_KEY, run_relay_for, site_db_connector
from cauldron_fabric.testing.kafka_broker import KafkaBroker, free_port
from cauldron_fabric.tests.test_kafka_relay_support import KafkaRelayCase, event_status, relay_until_idle
from cauldron_fabric.tests.utils import fabric_settings, lose_connection_then_save_todo


class TestRelayOutages(KafkaRelayCase):
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

		with (
			fabric_settings(bootstrap_servers=broker.bootstrap, message_timeout_ms=1000),
			patch.object(relay_module, "RECOVERY_CHECK_SECONDS", 1.0),  # asked every 10 s by default
		):
			broker.stop()
			recovery = threading.Thread(target=outage_ends)
			recovery.start()
			# Until the status no longer reports the outage (at most 30 s: the assertion below).
			said: list[str] = []
			run_relay_for(
				lambda: "back" in seen and reported_error() is None,
				max_seconds=30,
				name=name,
				say=said.append,
			)
			recovery.join()
		# The command's terminal hears of the outage once, however often the relay retries, and
		# of its end.
		site = frappe.local.site
		self.assertLessEqual(len(said), 3, said)  # not a line per retry (it retried every second)
		self.assertTrue(said[0].startswith(f"fabric relay for {site}: "), said)
		self.assertIn(f"Kafka at {broker.bootstrap}", said[0])
		# Said once: the transport's own hint already says so, and the line repeated it.
		self.assertEqual(said[0].count("events wait and are retried"), 1, said)
		self.assertEqual(said[-1], f"fabric relay for {site}: publishing again")
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
