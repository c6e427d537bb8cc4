"""Event Subscriptions on a real site: validation, permissions, history, routing, triggers."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import threading
from zoneinfo import ZoneInfo

import frappe
from frappe.tests.utils import FrappeTestCase, patch_hooks
from frappe.utils import now_datetime

from cauldron_fabric import install
from cauldron_fabric.api import subscriptions as subscriptions_api
from cauldron_fabric.core.delivery import BrokenSubscription, create_table_sql
from cauldron_fabric.delivery import subscriptions as routing
from cauldron_fabric.delivery.schedules import fire_due_triggers
from cauldron_fabric.delivery.worker import SubscriptionBook
from cauldron_fabric.tests.test_delivery_support import (
	COMMIT_THROUGH_PROXY,
	DeliveryTestCase,
	HeldRedisWrite,
	deliveries,
	make_subscription,
	new_subscription,
	save_todo,
)
from cauldron_fabric.tests.test_http import make_user
from cauldron_fabric.tests.test_registry_support import refuse_the_next_commit
from cauldron_fabric.tests.utils import SQL_LOOKALIKE_TEXT, events_after, fabric_settings, last_seq


class TestSubscriptionValidation(DeliveryTestCase):
	def test_an_invalid_condition_is_refused_on_save_pointing_at_the_problem(self):
		with self.assertRaises(frappe.ValidationError) as caught:
			self.subscription(condition="data.payload.doc.grand_total >")
		message = str(caught.exception)
		self.assertIn("Invalid condition at column 31: expected a value", message)
		self.assertIn("^", message)

	def test_a_migrate_shows_which_stored_subscriptions_no_longer_compile(self):
		doc = self.subscription(webhook_url="https://example.com/hook")
		frappe.db.set_value("Event Subscription", doc.name, "condition", 'data.payload.a == "x\\ud83d"')
		install.after_migrate()
		self.assertIn(
			"half of a surrogate pair", frappe.db.get_value("Event Subscription", doc.name, "problem")
		)
		frappe.db.set_value("Event Subscription", doc.name, "condition", "")
		install.after_migrate()
		self.assertIsNone(frappe.db.get_value("Event Subscription", doc.name, "problem"))

	def test_a_problem_quoting_markup_is_kept_as_text_desk_cannot_run_as_html(self):
		# The problem is written without a sanitizing save into a field Desk's form renders as
		# HTML, and it quotes the condition: its markup would run in every admin's browser.
		doc = self.subscription(webhook_url="https://example.com/hook")
		condition = 'data.payload.a == "<img src=x onerror=alert(1)>" and data.payload.b == "\\u00e"'
		frappe.db.set_value("Event Subscription", doc.name, "condition", condition)
		install.after_migrate()
		problem = frappe.db.get_value("Event Subscription", doc.name, "problem")
		self.assertIn("four hexadecimal digits", problem)
		self.assertNotRegex(problem, "[<>]")

	def test_subscriptions_load_while_a_migrate_has_not_yet_added_their_new_fields(self):
		# A migrate syncs DocTypes one by one, and each synced DocType is a system.change whose
		# routing loads the subscriptions: before Event Subscription's own turn, its table lacks
		# the fields this version added, and selecting them failed the whole migrate.
		doc = self.subscription(webhook_url="https://example.com/hook")
		frappe.db.sql_ddl("ALTER TABLE `tabEvent Subscription` DROP COLUMN `problem`")
		self.addCleanup(frappe.db.updatedb, "Event Subscription")
		frappe.cache.hdel("table_columns", "tabEvent Subscription")
		self.assertNotIn("problem", frappe.db.get_table_columns("Event Subscription"))
		routing.subscriptions_changed()
		frappe.db.commit()
		start = last_seq()
		frappe.get_doc({"doctype": "ToDo", "description": self.tag}).insert()
		self.assertTrue(events_after(start, "ToDo"), "the save recorded its event")
		self.assertIn(doc.name, routing.load_subscriptions())

	def test_bad_patterns_templates_and_urls_are_each_listed(self):
		with self.assertRaises(frappe.ValidationError) as caught:
			self.subscription(
				event_types="sales_*",
				payload_form="Jinja template",
				template="{{ payload.doc",
				webhook_url="ftp://example.com/x",
			)
		message = str(caught.exception)
		self.assertIn("wildcards stand for whole words", message)
		self.assertIn("syntax error", message)
		self.assertIn("has no known kind", message)

	def test_a_handler_must_be_registered_by_an_app(self):
		with self.assertRaisesRegex(frappe.ValidationError, "is not registered"):
			self.subscription(destination_type="In-app handler", handler="frappe.utils.now")
		with patch_hooks({"fabric_handlers": {"todo.*": ["frappe.utils.now"]}}):
			doc = self.subscription(destination_type="In-app handler", handler="frappe.utils.now")
		self.assertEqual(routing.destination_address(doc), "handler:frappe.utils.now")

	def test_a_kafka_topic_named_dot_or_dot_dot_is_refused(self):
		# Kafka refuses both names, so every delivery would end as a dead letter.
		for topic in (".", ".."):
			with self.assertRaisesRegex(frappe.ValidationError, "write a topic name.*Kafka refuses"):
				self.subscription(destination_type="Kafka topic", kafka_topic=topic)
		self.subscription(destination_type="Kafka topic", kafka_topic="...")

	def test_a_typed_zero_is_honoured_or_refused_and_an_empty_number_means_the_default(self):
		hook = "https://a.example.com/hook"
		# No wait before a retry can be wanted; a stored 0 read as the 5 s and 3600 s defaults.
		doc = self.subscription(webhook_url=hook, initial_delay=0, max_delay=0)
		policy = routing.load_subscriptions()[doc.name].policy
		self.assertEqual((policy.backoff.base, policy.backoff.maximum), (0, 0))
		# 0 attempts or a 0 s timeout cannot work: refused, not read as 8 attempts or 10 s.
		with self.assertRaisesRegex(frappe.ValidationError, "Attempts must be between 1 and 100, not 0"):
			self.subscription(webhook_url=hook, max_attempts=0)
		with self.assertRaisesRegex(frappe.ValidationError, "timeout 0.0 s must be more than 0"):
			self.subscription(webhook_url=hook, webhook_timeout=0)
		# A field emptied in the form takes its default, which the form then shows.
		doc.update({"initial_delay": None, "max_delay": None, "max_attempts": None, "webhook_timeout": None})
		doc.save()
		frappe.db.commit()
		self.assertEqual(
			[doc.initial_delay, doc.max_delay, doc.max_attempts, doc.webhook_timeout], [5, 3600, 8, 10]
		)
		loaded = routing.load_subscriptions()[doc.name]
		self.assertEqual(
			[loaded.policy.backoff.base, loaded.policy.backoff.maximum, loaded.policy.max_attempts],
			[5, 3600, 8],
		)
		self.assertEqual(loaded.webhook.timeout, 10)

	def test_a_delivery_worker_loaded_before_a_migrate_sees_what_its_patches_rewrote(self):
		# Processes of the new version may start before its migrate (a new image's containers
		# start beside their migrate job): a worker then loads a 0 stored when it meant the
		# default as broken. The patch rewrites that 0 without touching the subscription's
		# version, and the worker went on dead-lettering its deliveries until the next change.
		from cauldron_fabric.patches.stored_zero_retry_settings_mean_the_default import execute

		doc = self.subscription(webhook_url="https://a.example.com/hook")
		frappe.db.sql("UPDATE `tabEvent Subscription` SET max_attempts = 0 WHERE name = %s", (doc.name,))
		frappe.db.commit()
		book = SubscriptionBook()
		book.refresh()
		self.assertIsInstance(book.get(doc.name), BrokenSubscription)
		execute()
		install.after_migrate()
		frappe.db.commit()
		book.refresh()
		loaded = book.get(doc.name)
		self.assertNotIsInstance(loaded, BrokenSubscription, "the worker still has the stored 0")
		self.assertEqual(loaded.policy.max_attempts, 8)

	def test_a_zero_stored_when_it_meant_the_default_keeps_meaning_the_default(self):
		from cauldron_fabric.patches.stored_zero_retry_settings_mean_the_default import execute

		doc = self.subscription(webhook_url="https://a.example.com/hook")
		frappe.db.sql(
			"""UPDATE `tabEvent Subscription` SET max_attempts = 0, initial_delay = 0, max_delay = 0,
			webhook_timeout = 0 WHERE name = %s""",
			(doc.name,),
		)
		execute()
		loaded = routing.load_subscriptions()[doc.name]
		self.assertEqual(
			[loaded.policy.max_attempts, loaded.policy.backoff.base, loaded.policy.backoff.maximum],
			[8, 5, 3600],
		)
		self.assertEqual(loaded.webhook.timeout, 10)

	def test_a_cron_trigger_must_be_a_cron_expression(self):
		with self.assertRaisesRegex(frappe.ValidationError, "is not a cron expression"):
			self.subscription(schedules=[{"cron": "every monday"}])

	def test_a_cron_trigger_that_can_never_run_is_refused(self):
		# Well-formed, but there is no 30 February: croniter finds no run time at all.
		hook = "https://a.example.com/hook"
		with self.assertRaisesRegex(frappe.ValidationError, "is not a cron expression"):
			self.subscription(webhook_url=hook, schedules=[{"cron": "0 0 30 2 *"}])
		self.subscription(webhook_url=hook, schedules=[{"cron": "0 0 29 2 *"}])  # leap days do come

	def test_a_cron_trigger_with_a_random_field_is_refused(self):
		# croniter draws R anew each minute the job looks: the run time wanders, and with
		# "0 0 R * 1#2" a draw outside 8-14 finds no run at all and fails the whole job.
		hook = "https://a.example.com/hook"
		for cron in ("R * * * *", "0 0 r(1-5) * *", "0 R/2 * * *"):
			with self.assertRaisesRegex(frappe.ValidationError, "is not a cron expression"):
				self.subscription(webhook_url=hook, schedules=[{"cron": cron}])
		self.subscription(webhook_url=hook, schedules=[{"cron": "0 0 * MAR FRI"}])

	def test_webhooks_always_get_a_secret_kept_as_a_password(self):
		doc = self.subscription(webhook_url="https://receiver.example.com/hook")
		secret = subscriptions_api.reveal_secret(doc.name)["secret"]
		self.assertTrue(secret.startswith("whsec_"))
		self.assertNotIn(secret, str(frappe.db.get_value("Event Subscription", doc.name, "webhook_secret")))
		self.assertEqual(
			frappe.get_meta("Event Subscription").get_field("webhook_secret").fieldtype, "Password"
		)
		self.assertEqual(
			frappe.get_meta("Event Subscription Header").get_field("value").fieldtype, "Password"
		)

	def test_a_password_in_the_webhook_url_is_refused_with_the_header_to_use_instead(self):
		with self.assertRaisesRegex(frappe.ValidationError, "contains a password.*Authorization = Basic"):
			self.subscription(webhook_url="https://hook:S3cret@receiver.example.com/hook")
		self.subscription(webhook_url="https://hook@receiver.example.com/hook")  # a user alone is no secret

	def test_a_header_the_request_cannot_carry_is_refused_on_save(self):
		hook = "https://receiver.example.com/hook"
		for header, problem in (
			({"header": "X Api Key", "value": "k1"}, "not a valid HTTP header name"),
			({"header": "X-Api-Key", "value": "k1\nX-Injected: 1"}, "line break"),
		):
			with self.subTest(header=header["header"]):
				with self.assertRaisesRegex(frappe.ValidationError, problem):
					self.subscription(webhook_url=hook, webhook_headers=[header])

	def test_a_header_row_the_sender_would_override_is_refused_on_save_saying_what_sets_it(self):
		# The sender writes these itself after the subscription's rows: a row's value never
		# reached the receiver, and nothing said so.
		hook = "https://receiver.example.com/hook"
		for form, header, problem in (
			("Envelope", "Content-Type", "content type follows the payload form.*Jinja template"),
			("Jinja template", "content-TYPE", "content type follows the payload form.*Content type"),
			("Envelope", "CE-ID", "ce-id carries the CloudEvents attribute id of the event"),
			("CloudEvents binary", "ce-time", "ce-time carries the CloudEvents attribute time of the event"),
			("Field selection", "ce-subject", "ce-subject carries"),
			("Envelope", "webhook-signature", "set by the fabric"),
			("Envelope", "Host", "set by the fabric"),
			("Envelope", "Content-Length", "set by the fabric"),
		):
			values = {"payload_form": form, "template": "{{ id }}", "selected_fields": "id"}
			row = {"header": header, "value": "mine"}
			with self.subTest(form=form, header=header):
				with self.assertRaisesRegex(frappe.ValidationError, problem):
					self.subscription(webhook_url=hook, webhook_headers=[row], **values)
		# Sent as written: the form writes no such header (the envelope's body has the time, and
		# a structured CloudEvent's body every attribute), or it is an extension of the row's own.
		for form, header in (
			("Envelope", "ce-time"),
			("CloudEvents structured", "ce-id"),
			("Envelope", "ce-myext"),
		):
			with self.subTest(form=form, header=header):
				self.subscription(
					webhook_url=hook, payload_form=form, webhook_headers=[{"header": header, "value": "v"}]
				)

	def test_a_stored_header_row_the_sender_overrides_can_still_be_switched_off(self):
		# Saved before the refusal came: it is delivered as before, disabling it needs no fix.
		doc = self.subscription(webhook_url="https://receiver.example.com/hook")
		doc.append("webhook_headers", {"header": "Content-Type", "value": "text/plain"}).db_insert()
		frappe.db.commit()
		doc.reload()
		doc.enabled = 0
		doc.save()
		self.assertIn("content type follows the payload form", doc.problem)
		doc.enabled = 1
		with self.assertRaisesRegex(frappe.ValidationError, "content type follows the payload form"):
			doc.save()

	def test_every_change_is_in_the_version_history(self):
		doc = self.subscription(webhook_url="https://receiver.example.com/hook")
		doc.event_types = "todo.created\ntodo.updated"
		doc.save(ignore_version=False)  # tests skip versions unless asked
		versions = frappe.get_all(
			"Version", filters={"ref_doctype": "Event Subscription", "docname": doc.name}, pluck="data"
		)
		self.assertTrue(any("todo.updated" in data for data in versions), versions)

	def test_subscriptions_cannot_be_renamed(self):
		doc = self.subscription(webhook_url="https://receiver.example.com/hook")
		self.assertRaises(
			frappe.ValidationError, frappe.rename_doc, "Event Subscription", doc.name, doc.name + "-x"
		)


class TestSubscriptionPermissions(DeliveryTestCase):
	def test_only_fabric_managers_create_change_or_inspect_subscriptions(self):
		doc = self.subscription(webhook_url="https://receiver.example.com/hook")
		clerk = make_user("fabric-clerk@example.com", ["Blogger"])
		manager = make_user("fabric-only-manager@example.com", ["Fabric Manager"])
		frappe.set_user(clerk)
		self.assertRaises(
			frappe.PermissionError,
			frappe.get_doc(
				{
					"doctype": "Event Subscription",
					"subscription_name": self.tag + "-clerk",
					"event_types": "*",
				}
			).insert,
		)
		self.assertRaises(frappe.PermissionError, frappe.get_doc("Event Subscription", doc.name).save)
		for method, args in (
			(subscriptions_api.reveal_secret, (doc.name,)),
			(subscriptions_api.get_delivery_stats, (doc.name,)),
			(subscriptions_api.send_test_event, (doc.name,)),
		):
			self.assertRaises(frappe.PermissionError, method, *args)
		frappe.set_user(manager)
		changed = frappe.get_doc("Event Subscription", doc.name)
		changed.description = "changed by a Fabric Manager"
		changed.save()
		self.assertIn("whsec_", subscriptions_api.reveal_secret(doc.name)["secret"])


class TestRouting(DeliveryTestCase):
	def test_a_test_event_is_queued_for_its_subscription_alone_and_refused_while_disabled(self):
		doc = self.subscription(webhook_url="https://a.example.com/hook")
		other = self.subscription(webhook_url="https://b.example.com/hook")
		event_id = subscriptions_api.send_test_event(doc.name)["eventId"]
		frappe.db.commit()
		self.assertEqual(
			[(d.event_type, json.loads(d.envelope)["id"]) for d in deliveries(doc.name)],
			[("subscription.test", event_id)],
		)
		self.assertEqual(deliveries(other.name), [])
		doc.enabled = 0
		doc.save()
		with self.assertRaisesRegex(frappe.ValidationError, "is disabled: enable it"):
			subscriptions_api.send_test_event(doc.name)

	def test_a_subscription_whose_commit_was_refused_routes_nothing(self):
		refuse_the_next_commit()
		doc = new_subscription(self.tag, webhook_url="https://refused.example.com/hook")
		self.created.append(doc.name)
		frappe.get_doc({"doctype": "ToDo", "description": self.tag}).insert()  # routed in its snapshot
		with self.assertRaises(frappe.ValidationError):
			frappe.db.commit()
		frappe.db.rollback()
		save_todo(self.tag)
		self.assertEqual(deliveries(doc.name), [], "a rolled-back subscription still gets deliveries")

	def test_a_save_queues_one_delivery_per_matching_subscription_in_its_transaction(self):
		first = self.subscription(webhook_url="https://a.example.com/hook")
		second = self.subscription(webhook_url="https://b.example.com/hook", event_types="todo.updated")
		other = self.subscription(webhook_url="https://c.example.com/hook", condition='data.entity == "Note"')
		frappe.get_doc({"doctype": "ToDo", "description": self.tag}).insert()
		frappe.db.rollback()
		self.assertEqual(deliveries(first.name), [], "a rolled-back save queued a delivery")

		name = save_todo(self.tag)
		todo = frappe.get_doc("ToDo", name)
		todo.status = "Closed"
		todo.save()
		frappe.db.commit()
		self.assertEqual([r.event_type for r in deliveries(first.name)], ["todo.created", "todo.updated"])
		self.assertEqual([r.event_type for r in deliveries(second.name)], ["todo.updated"])
		self.assertEqual(deliveries(other.name), [])
		self.assertEqual({r.status for r in deliveries(first.name)}, {"Pending"})

	def test_a_queued_delivery_carries_the_document_text_unaltered(self):
		doc = self.subscription(webhook_url="https://a.example.com/hook", condition="")
		name = save_todo(f"{self.tag} {SQL_LOOKALIKE_TEXT}")
		stored = frappe.db.get_value("ToDo", name, "description")
		self.assertIn("IFNULL(", stored)
		(delivery,) = deliveries(doc.name)
		self.assertEqual(json.loads(delivery.envelope)["data"]["payload"]["doc"]["description"], stored)

	def test_the_index_is_reused_until_a_subscription_change_commits(self):
		self.subscription(webhook_url="https://a.example.com/hook")
		index = routing.routing_index()
		frappe.local.fabric_subscriptions_checked = 0.0  # as in a new request
		self.assertIs(routing.routing_index(), index, "rebuilt without any change")
		before = routing.current_version()
		added = self.subscription(webhook_url="https://b.example.com/hook", event_types="todo.*\nnote.*")
		self.assertNotEqual(routing.current_version(), before, "the version did not change on commit")
		rebuilt = routing.routing_index()
		self.assertIsNot(rebuilt, index)
		self.assertIn(added.name, [s.name for s, _ in rebuilt.entries])

	def test_a_change_is_published_after_redis_dropped_the_counter(self):
		# Frappe's cache Redis evicts keys under memory pressure (allkeys-lru): the counter, used
		# only at a change, can go while the token, read at every check, stays. Counting again
		# from 1 under that token's number, no change would be published for a long while.
		doc = self.subscription(webhook_url="https://a.example.com/hook")
		frappe.cache.delete(frappe.cache.make_key(routing.SEQUENCE_KEY))
		doc.max_attempts = 4
		doc.save()
		frappe.db.commit()
		self.assertEqual(
			routing.state_of(routing.current_version()),
			routing.stored_version(),
			"Redis names a state from before the change",
		)

	def test_a_subscription_saved_during_a_request_is_routed_by_the_next_requests(self):
		# Another process commits a subscription while this one is inside a request whose
		# transaction already read something (REPEATABLE READ: its snapshot predates the
		# subscription). The next request must route to the subscription all the same.
		routing.routing_index()
		frappe.local.fabric_subscriptions_checked = 0.0  # a new request...
		frappe.db.sql("SELECT name FROM `tabToDo` LIMIT 1")  # ...whose snapshot is now taken
		site, sites_path, made = frappe.local.site, frappe.local.sites_path, []

		def admin_saves_a_subscription() -> None:
			frappe.init(site=site, sites_path=sites_path)
			frappe.connect()
			try:
				frappe.set_user("Administrator")
				made.append(make_subscription(self.tag, webhook_url="https://a.example.com/hook").name)
			finally:
				frappe.destroy()

		thread = threading.Thread(target=admin_saves_a_subscription)
		thread.start()
		thread.join()
		self.created += made
		save_todo(self.tag)  # still in the old snapshot: this one may miss the subscription
		frappe.local.fabric_subscriptions_checked = 0.0  # the next request
		name = save_todo(self.tag)
		routed = [json.loads(r.envelope)["data"]["entityId"] for r in deliveries(made[0])]
		self.assertIn(name, routed, "a committed subscription is ignored by this process for good")

	def test_processes_settle_on_the_last_committed_subscription_change(self):
		# Process A commits a change and writes its token to Redis; process B commits another
		# change and publishes its token while A's write is on its way, so A's write lands last.
		# Redis must still name the newest state, or every process reloads at every check.
		first = self.subscription(webhook_url="https://a.example.com/hook")
		second = self.subscription(webhook_url="https://b.example.com/hook")
		with HeldRedisWrite() as proxy:
			process_a = subprocess.Popen(
				[sys.executable, "-c", COMMIT_THROUGH_PROXY, frappe.local.site, proxy.url, first.name],
				cwd=frappe.local.sites_path,
				stdin=subprocess.PIPE,
				stdout=subprocess.PIPE,
				text=True,
			)
			self.assertEqual(process_a.stdout.readline().strip(), "saved")
			proxy.hold_next_write()
			process_a.stdin.write("commit\n")
			process_a.stdin.flush()
			self.assertTrue(proxy.held.wait(30), "process A wrote nothing to Redis after its commit")
			second.reload()
			second.max_attempts = 4
			second.save()
			frappe.db.commit()  # process B, start to end, while A's write waits
			proxy.release.set()
			self.assertEqual(process_a.wait(timeout=30), 0)
		routing._compiled.pop(frappe.local.site, None)
		frappe.local.fabric_subscriptions_checked = 0.0
		index = routing.routing_index()
		frappe.local.fabric_subscriptions_checked = 0.0  # the next request
		self.assertIs(routing.routing_index(), index, "Redis names an older state than the database")

	def test_ordered_subscriptions_key_deliveries_by_document(self):
		doc = self.subscription(webhook_url="https://a.example.com/hook", keep_order=1)
		name = save_todo(self.tag)
		(row,) = frappe.db.sql(
			"SELECT ordering_key FROM `tabEvent Delivery` WHERE subscription = %s", (doc.name,)
		)
		self.assertEqual(row[0], f"ToDo/{name}")


class TestScheduledTriggers(DeliveryTestCase):
	def test_the_trigger_job_waits_for_the_migrate_that_adds_the_utc_run_time(self):
		# Between an upgrade's new code and its migrate the scheduler runs the new job on the old
		# table: selecting last_run_utc failed the job every minute until the migrate ended.
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": "*/5 * * * *"}]
		)
		frappe.db.sql_ddl("ALTER TABLE `tabEvent Subscription Schedule` DROP COLUMN `last_run_utc`")
		self.addCleanup(frappe.db.updatedb, "Event Subscription Schedule")
		frappe.cache.hdel("table_columns", "tabEvent Subscription Schedule")
		later = now_datetime() + dt.timedelta(minutes=6)
		self.assertEqual(fire_due_triggers(later), 0)
		frappe.db.updatedb("Event Subscription Schedule")
		start = last_seq()
		self.assertGreaterEqual(fire_due_triggers(later), 1)
		fired = events_after(start, "Event Subscription", owner.name)
		self.assertEqual(len(fired), 1, "the run missed meanwhile fires once after the migrate")

	def test_a_due_trigger_records_an_event_that_reaches_its_subscription_once(self):
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": "*/5 * * * *", "label": "digest"}]
		)
		listener = self.subscription(
			webhook_url="https://b.example.com/hook", event_types="schedule.*", condition=""
		)
		start = last_seq()
		later = now_datetime() + dt.timedelta(minutes=6)
		self.assertGreaterEqual(fire_due_triggers(later), 1)
		self.assertEqual(fire_due_triggers(later), 0, "fired twice for the same time")
		(event,) = [e for e in events_after(start, "Event Subscription", owner.name)]
		self.assertEqual(event["type"], "schedule.triggered")
		self.assertEqual(event["data"]["payload"]["schedule"], "digest")
		self.assertEqual([r.event_type for r in deliveries(owner.name)], ["schedule.triggered"])
		# Other subscriptions' triggers due by then reach the listener too: count this one's.
		to_listener = [json.loads(row.envelope)["id"] for row in deliveries(listener.name)]
		self.assertEqual(to_listener.count(event["id"]), 1)

	def test_a_subscription_with_triggers_saves_before_the_migrate_adds_the_utc_run_time(self):
		# Between an upgrade's new code and its migrate, the schedules' table and DocType lack
		# last_run_utc: reading it back on save refused every save of a subscription with triggers.
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": "*/5 * * * *"}]
		)
		schedule = "Event Subscription Schedule"
		frappe.db.sql_ddl(f"ALTER TABLE `tab{schedule}` DROP COLUMN `last_run_utc`")
		frappe.db.delete("DocField", {"parent": schedule, "fieldname": "last_run_utc"})
		frappe.db.commit()
		self.addCleanup(
			frappe.reload_doc, "cauldron_fabric", "doctype", "event_subscription_schedule", force=True
		)
		frappe.clear_cache(doctype=schedule)
		frappe.cache.hdel("table_columns", f"tab{schedule}")
		owner = frappe.get_doc("Event Subscription", owner.name)
		owner.description = "saved before the migrate"
		owner.save()
		frappe.db.commit()
		self.assertEqual(
			frappe.db.get_value("Event Subscription", owner.name, "description"), "saved before the migrate"
		)

	def test_saving_a_subscription_opened_before_a_trigger_fired_does_not_fire_it_again(self):
		# The scheduler claims a trigger by writing last_triggered_at behind the form's back;
		# the form (Desk) still holds the old value and a save must not write it back.
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": "*/5 * * * *"}]
		)
		opened = frappe.get_doc("Event Subscription", owner.name)
		later = now_datetime() + dt.timedelta(minutes=6)
		self.assertEqual(fire_due_triggers(later), 1)
		opened.description = "edited while the trigger fired"
		opened.save()
		frappe.db.commit()
		self.assertEqual(fire_due_triggers(later), 0, "fired twice for the same time")
		self.assertEqual(len(deliveries(owner.name)), 1)

	def use_time_zone(self, zone: str) -> None:
		"""Sets the site's time zone (System Settings) for this test; the trigger job commits."""

		def set_zone(name: str) -> None:
			frappe.db.set_single_value("System Settings", "time_zone", name)
			frappe.db.commit()
			frappe.clear_document_cache("System Settings", "System Settings")
			if hasattr(frappe.local, "system_settings"):
				del frappe.local.system_settings

		self.addCleanup(set_zone, frappe.db.get_single_value("System Settings", "time_zone"))
		set_zone(zone)

	def runs_across(self, start: dt.datetime, end: dt.datetime) -> dict[str, list[str]]:
		"""Runs the trigger job once a minute from ``start`` to ``end`` (UTC); returns the runs per cron.

		The subscription's triggers count as last fired the minute before ``start`` on the site's
		clock, as a site running through the change would have them.
		"""
		crons = ["*/30 * * * *", "0 * * * *", "30 2 * * *"]
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": cron} for cron in crons]
		)
		zone = ZoneInfo(frappe.db.get_single_value("System Settings", "time_zone"))
		before = (start - dt.timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
		frappe.db.sql(
			"UPDATE `tabEvent Subscription Schedule` SET last_triggered_at = %s WHERE parent = %s",
			(before, owner.name),
		)
		frappe.db.commit()
		seq, minute = last_seq(), start
		while minute <= end:
			fire_due_triggers(minute)
			minute += dt.timedelta(minutes=1)
		runs: dict[str, list[str]] = {cron: [] for cron in crons}
		for event in events_after(seq, "Event Subscription", owner.name):
			payload = event["data"]["payload"]
			instant = dt.datetime.fromisoformat(payload["scheduledFor"]).astimezone(dt.timezone.utc)
			runs[payload["cron"]].append(instant.strftime("%H:%M"))
		return runs

	def test_no_run_is_skipped_or_repeated_when_the_clocks_go_back(self):
		# Berlin, 25 October 2026: 03:00 CEST (01:00 UTC) becomes 02:00 CET, 02:00-03:00 shows twice.
		self.use_time_zone("Europe/Berlin")
		utc = dt.timezone.utc
		runs = self.runs_across(
			dt.datetime(2026, 10, 24, 22, 45, tzinfo=utc), dt.datetime(2026, 10, 25, 2, 40, tzinfo=utc)
		)
		every_half_hour = ["23:00", "23:30", "00:00", "00:30", "01:00", "01:30", "02:00", "02:30"]
		self.assertEqual(runs["*/30 * * * *"], every_half_hour)
		self.assertEqual(runs["0 * * * *"], ["23:00", "00:00", "01:00", "02:00"])
		self.assertEqual(runs["30 2 * * *"], ["00:30"], "a daily run fires once, in the first 02:30")

	def test_no_run_is_skipped_or_repeated_when_the_clocks_go_forward(self):
		# Berlin, 29 March 2026: 02:00 CET (01:00 UTC) becomes 03:00 CEST, 02:00-03:00 never shows.
		self.use_time_zone("Europe/Berlin")
		utc = dt.timezone.utc
		runs = self.runs_across(
			dt.datetime(2026, 3, 28, 23, 45, tzinfo=utc), dt.datetime(2026, 3, 29, 2, 40, tzinfo=utc)
		)
		self.assertEqual(runs["*/30 * * * *"], ["00:00", "00:30", "01:00", "01:30", "02:00", "02:30"])
		self.assertEqual(runs["0 * * * *"], ["00:00", "01:00", "02:00"])
		self.assertEqual(runs["30 2 * * *"], ["01:30"], "02:30 never shows: it runs an hour later, at 03:30")

	def test_a_trigger_that_can_never_run_does_not_stop_the_others(self):
		# Saved before such expressions were refused (or written by a patch): it must be skipped,
		# not raise in every run of the job before the triggers after it are looked at.
		stuck = self.subscription(webhook_url="https://a.example.com/hook", schedules=[{"cron": "0 0 * * *"}])
		frappe.db.set_value("Event Subscription Schedule", stuck.schedules[0].name, "cron", "0 0 31 4 *")
		frappe.db.commit()
		owner = self.subscription(
			webhook_url="https://b.example.com/hook", schedules=[{"cron": "*/5 * * * *"}]
		)
		self.assertGreaterEqual(fire_due_triggers(now_datetime() + dt.timedelta(minutes=6)), 1)
		self.assertEqual([r.event_type for r in deliveries(owner.name)], ["schedule.triggered"])
		self.assertEqual(deliveries(stuck.name), [])


class TestDeliveryStats(DeliveryTestCase):
	def delivered(self, subscription: str, latencies: list[float]) -> None:
		from cauldron_fabric.core.delivery import DeliveryRequest, build_enqueue
		from cauldron_fabric.emit.recorder import new_envelope

		envelopes = [
			new_envelope("subscription.test", "Event Subscription", subscription, "test", {})
			for _ in latencies
		]
		sql, params = build_enqueue(
			[DeliveryRequest(subscription, e) for e in envelopes], actor="Administrator", now=now_datetime()
		)
		frappe.db.sql(sql, params)
		for envelope, latency in zip(envelopes, latencies, strict=True):
			frappe.db.sql(
				"""UPDATE `tabEvent Delivery` SET status = 'Delivered', attempts = 1, last_latency_ms = %s
				WHERE subscription = %s AND event_id = %s""",
				(latency, subscription, envelope.id),
			)
		frappe.db.commit()

	def test_latency_percentiles_are_nearest_rank(self):
		from cauldron_fabric.delivery.stats import subscription_stats

		doc = self.subscription(webhook_url="https://a.example.com/hook")
		empty = subscription_stats(doc.name)
		self.assertEqual((empty["counts"], empty["latencyMs"]), ({}, {"p50": None, "p95": None, "max": None}))
		self.delivered(doc.name, [float(ms) for ms in range(1, 21)])
		# Of 20 latencies 1..20 ms, the median is the 10th and the 95th percentile the 19th:
		# a p95 that is always the maximum says nothing the maximum does not.
		stats = subscription_stats(doc.name)
		self.assertEqual(stats["counts"], {"Delivered": 20})
		self.assertEqual(stats["latencyMs"], {"p50": 10.0, "p95": 19.0, "max": 20.0})

	def test_the_median_of_two_latencies_is_not_the_slower_one(self):
		from cauldron_fabric.delivery.stats import subscription_stats

		doc = self.subscription(webhook_url="https://a.example.com/hook")
		self.delivered(doc.name, [10.0, 900.0])
		self.assertEqual(subscription_stats(doc.name)["latencyMs"]["p50"], 10.0)


class TestDeliveryTable(FrappeTestCase):
	def test_the_doctype_has_the_columns_of_the_core_store(self):
		suffix = frappe.generate_hash(length=6)
		table, sequence = f"tabEvent Delivery check {suffix}", f"event_delivery_check_{suffix}_seq"
		for statement in create_table_sql(table, sequence):
			frappe.db.sql_ddl(statement)
		try:
			core = self._columns(table)
			doctype = self._columns("tabEvent Delivery")
		finally:
			frappe.db.sql_ddl(f"DROP TABLE IF EXISTS `{table}`")
			frappe.db.sql_ddl(f"DROP SEQUENCE IF EXISTS `{sequence}`")
		for column, shape in core.items():
			self.assertEqual(doctype.get(column), shape, f"column {column}")
		indexes = {row[2] for row in frappe.db.sql("SHOW INDEX FROM `tabEvent Delivery`")}
		self.assertLessEqual(
			{"fabric_subscription_event", "fabric_delivery_due", "fabric_delivery_order"}, indexes
		)

	def _columns(self, table: str) -> dict[str, tuple]:
		rows = frappe.db.sql(f"SHOW COLUMNS FROM `{table}`")
		# Type without display width (int(11) and int are the same column), nullability.
		return {row[0]: (re.sub(r"^(int|bigint)\(\d+\)", r"\1", row[1]), row[2]) for row in rows}

	def test_deliveries_cannot_be_edited_through_the_orm(self):
		doc = frappe.new_doc("Event Delivery")
		doc.subscription = "x"
		self.assertRaises(frappe.ValidationError, doc.insert, ignore_permissions=True)


class TestFabricSettingsForDelivery(FrappeTestCase):
	def test_rabbitmq_url_must_be_amqp_without_a_password(self):
		for bad, message in (
			("http://rabbit:5672", "not an amqp:// or amqps:// URL"),
			("amqp://guest:secret@rabbit:5672/%2F", "contains a password"),
			("amqp://guest@rabbit:99999/%2F", "invalid port"),
		):
			settings = frappe.get_single("Fabric Settings")
			settings.rabbitmq_url = bad
			self.assertRaisesRegex(frappe.ValidationError, message, settings.save)

	def test_a_rabbitmq_user_without_a_password_is_refused_by_the_broker_not_a_crash(self):
		# pika cannot parse amqp://user@host: the safety net raised "malformed URL" every minute
		# and the relay command exited, where the broker's refusal should show on the event.
		from cauldron_fabric.emit.scheduled import relay_pending_events

		with fabric_settings(bootstrap_servers="", rabbitmq_url="amqp://guest@127.0.0.1:5672/%2F"):
			todo = frappe.get_doc({"doctype": "ToDo", "description": "user without password"}).insert()
			frappe.db.commit()
			relay_pending_events()
			frappe.db.rollback()
			status, error = frappe.db.get_value(
				"Event Log", {"entity": "ToDo", "entity_id": todo.name}, ["status", "last_error"]
			)
		self.assertEqual(status, "Pending")
		self.assertIn("refused user 'guest'", error)
		frappe.db.delete("Event Log", {"entity": "ToDo", "entity_id": todo.name})
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()

	def test_the_webhook_allow_list_is_checked(self):
		settings = frappe.get_single("Fabric Settings")
		settings.webhook_allowed_networks = "10.0.0.0/8\nnot a host!"
		self.assertRaisesRegex(frappe.ValidationError, "neither a network nor a host name", settings.save)

	def test_a_rabbitmq_url_alone_turns_publishing_on(self):
		from cauldron_fabric.emit.policy import current_policy

		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			self.assertFalse(current_policy().publishing)
			with fabric_settings(rabbitmq_url="amqp://guest@127.0.0.1:5672/%2F"):
				self.assertTrue(current_policy().publishing)
