"""Event Subscriptions on a real site: validation on save, and who may create, change or inspect them."""

from __future__ import annotations

import ipaddress
import socket

import frappe
from frappe.tests.utils import patch_hooks
from frappe.utils.password import set_encrypted_password

from cauldron_fabric import install
from cauldron_fabric.api import subscriptions as subscriptions_api
from cauldron_fabric.core.delivery import BrokenSubscription
from cauldron_fabric.delivery import subscriptions as routing
from cauldron_fabric.delivery.worker import SubscriptionBook
from cauldron_fabric.tests.test_delivery_support import (
	DeliveryTestCase,
	ReceiverCase,
	dead_letters,
	deliver,
	save_todo,
)
from cauldron_fabric.tests.test_http_support import make_user
from cauldron_fabric.tests.utils import events_after, fabric_settings, last_seq


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

	def test_a_webhook_to_a_private_address_warns_on_save_unless_the_allow_list_names_it(self):
		# Only the delivery refused it, as a dead letter later: nothing said so when it was set up.
		for url in ("http://10.1.2.3:5678/webhook", "http://[::1]/hook", "http://localhost:8080/hook"):
			with self.subTest(url=url):
				frappe.clear_messages()
				self.subscription(webhook_url=url)
				warned = " ".join(str(m) for m in frappe.get_message_log())
				self.assertIn("Deliveries to this URL will be refused", warned)
				self.assertIn("allow-list in Fabric Settings", warned)
		frappe.clear_messages()
		self.subscription(webhook_url="https://93.184.215.14/hook")  # a public address
		with fabric_settings(webhook_allowed_networks="10.0.0.0/8"):
			self.subscription(webhook_url="http://10.1.2.3:5678/webhook")
		self.assertEqual(frappe.get_message_log(), [])

	def test_a_webhook_host_name_is_resolved_on_save_to_warn_of_a_refused_or_unknown_address(self):
		# Before: only an address written out (or localhost) was looked at; a name that resolves
		# to a private address, or to nothing (a typo), was found out at the first delivery.
		host = socket.gethostname()  # in /etc/hosts: a loopback or private address
		addresses = {info[4][0] for info in socket.getaddrinfo(host, 443)}
		if any(ipaddress.ip_address(a).is_global for a in addresses):
			self.skipTest(f"{host} resolves to a public address here ({addresses})")
		for url, warning in (
			(f"http://{host}:8080/hook", "Deliveries to this URL will be refused"),
			("https://no-such-host.invalid/hook", "does not resolve now"),  # RFC 2606: never resolves
		):
			with self.subTest(url=url):
				frappe.clear_messages()
				self.subscription(webhook_url=url)
				self.assertIn(warning, " ".join(str(m) for m in frappe.get_message_log()))
		frappe.clear_messages()
		with fabric_settings(webhook_allowed_networks=host):
			self.subscription(webhook_url=f"http://{host}:8080/hook")
		self.assertEqual(frappe.get_message_log(), [])

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


class TestStoredHeaderRows(ReceiverCase):
	def test_a_stored_header_row_the_sender_writes_is_never_sent_and_its_events_become_dead_letters(self):
		# Saved before the refusal on save: a binary CloudEvent of an event without a causation id
		# has no ce-causationid header of its own, so the row's value reached the receiver as the
		# event's attribute. Delivery refuses the row as saving does, and says so on both.
		path = f"/{self.tag}"
		doc = self.subscription(webhook_url=self.receiver.url(path), payload_form="CloudEvents binary")
		row = doc.append("webhook_headers", {"header": "ce-causationid", "value": "*****"})
		row.db_insert()
		set_encrypted_password(row.doctype, row.name, "forged", "value")
		routing.subscriptions_changed()
		frappe.db.commit()
		save_todo(self.tag)
		(delivery,) = deliver(doc.name)
		self.assertEqual(self.receiver.on(path), [], "the row's value was sent as the event's attribute")
		self.assertEqual(delivery.status, "Dead")
		(letter,) = dead_letters(doc.name)
		self.assertIn(
			f"Subscription {doc.name!r} does not compile: Webhook: Header 'ce-causationid'", letter.last_error
		)
		self.assertIn("Remove the row", letter.last_error)
		problem = frappe.db.get_value("Event Subscription", doc.name, "problem")
		self.assertIn("ce-causationid carries the CloudEvents attribute causationid", problem or "")


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
