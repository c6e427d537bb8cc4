"""A saved document delivered to each kind of destination, from a real site to real receivers.

Webhooks go to a local HTTP receiver (loopback allow-listed) and are verified with the official
``standardwebhooks`` library; Kafka topics to the Tansu test broker; RabbitMQ exchanges to the
machine's broker on 127.0.0.1:5672; in-app handlers are registered through ``fabric_handlers``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from unittest.mock import patch

import frappe
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.formats.json import JSONFormat
from cryptography.fernet import Fernet
from frappe.tests.utils import patch_hooks
from standardwebhooks.webhooks import Webhook

from cauldron_fabric.api import settings as settings_api
from cauldron_fabric.core.delivery.records import delivery_id
from cauldron_fabric.delivery import worker as worker_module
from cauldron_fabric.delivery.status import WORKERS_KEY
from cauldron_fabric.services.relay import run_relay_for
from cauldron_fabric.testing.kafka_broker import KafkaBroker, free_port, read_topic
from cauldron_fabric.testing.rabbitmq import RabbitMQ
from cauldron_fabric.tests.test_delivery_status import run_worker_in_thread, wait_for
from cauldron_fabric.tests.test_delivery_support import (
	ReceiverCase,
	dead_letters,
	deliver,
	envelope_of,
	save_todo,
)
from cauldron_fabric.tests.test_http_support import api_token, make_user, request
from cauldron_fabric.tests.utils import fabric_settings

RABBITMQ = "amqp://guest@127.0.0.1:5672/%2F"
PUBLISH = "/api/method/cauldron_fabric.api.publish.publish"
HANDLED: list[tuple[str, str]] = []


def record_handled(envelope, payload) -> None:
	"""An in-app handler: remembers the event and writes a ToDo, proving it runs in the site."""
	HANDLED.append((envelope.id, payload.content_type))
	frappe.get_doc({"doctype": "ToDo", "description": f"handled {envelope.id}"}).insert()


RAN_AS: list[str] = []
LEFT_OVER: list[tuple] = []


def record_user(envelope, payload) -> None:
	"""An in-app handler that remembers the user it runs as."""
	RAN_AS.append(frappe.session.user)


def note_what_is_left_over(envelope, payload) -> None:
	"""An in-app handler that notes the flag and messages an earlier call left, then leaves them."""
	LEFT_OVER.append((frappe.flags.get("fabric_handled"), len(frappe.local.message_log)))
	frappe.flags.fabric_handled = envelope.id
	frappe.msgprint(f"handled {envelope.id}")


def look_up_user(envelope, payload) -> None:
	"""An in-app handler that loads the user an event names (its error quotes the name)."""
	frappe.get_doc("User", envelope.data.payload["user"])


class TestWebhookAndHandlerDestinations(ReceiverCase):
	def test_a_saved_document_reaches_the_webhook_signed_for_standardwebhooks(self):
		path = f"/{self.tag}"
		doc = self.subscription(
			webhook_url=self.receiver.url(path),
			webhook_headers=[{"header": "X-Api-Key", "value": "n8n-key-1"}],
		)
		name = save_todo(self.tag)
		(row,) = deliver(doc.name)
		self.assertEqual((row.status, row.attempts, row.last_status_code), ("Delivered", 1, 200))
		(request,) = self.receiver.on(path)
		secret = frappe.get_doc("Event Subscription", doc.name).get_password("webhook_secret")
		event = Webhook(secret).verify(request.body, request.headers)
		self.assertEqual((event["type"], event["data"]["entityId"]), ("todo.created", name))
		self.assertEqual(request.headers["webhook-id"], delivery_id(event["id"], doc.name))
		self.assertEqual(request.headers["ce-id"], event["id"])
		self.assertEqual(request.headers["x-api-key"], "n8n-key-1")

	def test_two_subscriptions_to_one_receiver_send_the_event_under_two_webhook_ids(self):
		# Receivers drop a webhook-id they have seen: with the event id as webhook-id, the second
		# subscription's request was taken for a duplicate of the first and dropped.
		path = f"/{self.tag}"
		subscriptions = [self.subscription(webhook_url=self.receiver.url(path)) for _ in range(2)]
		save_todo(self.tag)
		rows = deliver(*(doc.name for doc in subscriptions))
		self.assertEqual([row.status for row in rows], ["Delivered", "Delivered"])
		requests = {r.headers["webhook-id"]: r for r in self.receiver.on(path)}
		event_id = envelope_of(rows[0])["id"]
		for doc in subscriptions:
			request = requests.pop(delivery_id(event_id, doc.name))
			secret = frappe.get_doc("Event Subscription", doc.name).get_password("webhook_secret")
			self.assertEqual(Webhook(secret).verify(request.body, request.headers)["id"], event_id)
			self.assertEqual(request.headers["ce-id"], event_id)
		self.assertEqual(requests, {})

	def test_a_delivery_shows_the_webhook_id_its_receiver_got(self):
		# An admin looking up a receiver's log line finds the delivery by its webhook-id.
		path = f"/{self.tag}"
		subscription = self.subscription(webhook_url=self.receiver.url(path))
		save_todo(self.tag)
		(row,) = deliver(subscription.name)
		(request,) = self.receiver.on(path)
		shown = frappe.get_doc("Event Delivery", row.name).as_dict()
		self.assertEqual(shown["webhook_id"], request.headers["webhook-id"])

	def test_a_copied_subscription_signs_its_webhooks(self):
		# Desk's Duplicate (frappe.copy_doc) copies the Password fields as shown, "*****": Frappe
		# stores no such value, so the copy had no secret and sent its webhooks unsigned.
		path = f"/{self.tag}"
		original = self.subscription(webhook_url=self.receiver.url("/original"))
		copy = frappe.copy_doc(frappe.get_doc("Event Subscription", original.name))
		copy.update({"subscription_name": f"{original.name}-copy", "webhook_url": self.receiver.url(path)})
		copy.insert()
		frappe.db.commit()
		self.created.append(copy.name)
		self.assertTrue(copy.is_dummy_password(original.webhook_secret))
		save_todo(self.tag)
		deliver(copy.name)
		(request,) = self.receiver.on(path)
		secret = frappe.get_doc("Event Subscription", copy.name).get_password("webhook_secret")
		event = Webhook(secret).verify(request.body, request.headers)
		self.assertEqual(event["type"], "todo.created")

	def test_a_webhook_whose_secret_is_gone_is_never_sent_unsigned(self):
		# Its encrypted secret lost (a restore without the __Auth table, a row deleted), the worker
		# loaded no secret and sent the event without a signature, which receivers cannot tell
		# from a forgery. It is a dead letter now, retried once the subscription has a secret.
		path = f"/{self.tag}"
		doc = self.subscription(webhook_url=self.receiver.url(path))
		frappe.db.delete("__Auth", {"doctype": "Event Subscription", "name": doc.name})
		frappe.db.commit()
		save_todo(self.tag)
		(row,) = deliver(doc.name)
		self.assertEqual((row.status, self.receiver.on(path)), ("Dead", []))
		(letter,) = dead_letters(doc.name)
		self.assertIn("has no signing secret", letter.last_error)
		frappe.get_doc("Event Subscription", doc.name).save()  # generates one
		frappe.db.commit()
		letter.retry()
		frappe.db.commit()
		deliver(doc.name)
		(request,) = self.receiver.on(path)
		secret = frappe.get_doc("Event Subscription", doc.name).get_password("webhook_secret")
		self.assertEqual(Webhook(secret).verify(request.body, request.headers)["type"], "todo.created")

	def test_a_secret_the_site_cannot_decrypt_holds_back_only_its_own_subscription(self):
		# Restored next to another site's encryption key, one secret raised in the loading of
		# every subscription, and the delivery worker stopped for all of them.
		path = f"/{self.tag}"
		unreadable, readable = (self.subscription(webhook_url=self.receiver.url(path)) for _ in range(2))
		foreign = Fernet(Fernet.generate_key()).encrypt(b"whsec_" + b"A" * 44).decode()
		frappe.db.sql(
			"UPDATE `__Auth` SET `password` = %s WHERE `doctype` = 'Event Subscription' AND `name` = %s",
			(foreign, unreadable.name),
		)
		frappe.db.commit()
		save_todo(self.tag)
		rows = {row.name: row for name in (unreadable.name, readable.name) for row in deliver(name)}
		self.assertEqual(
			sorted(
				(frappe.db.get_value("Event Delivery", n, "subscription"), r.status) for n, r in rows.items()
			),
			sorted([(unreadable.name, "Dead"), (readable.name, "Delivered")]),
		)
		(letter,) = dead_letters(unreadable.name)
		self.assertIn("cannot be decrypted with this site's encryption key", letter.last_error)
		self.assertEqual(len(self.receiver.on(path)), 1)

	def test_a_copied_header_value_must_be_typed_again(self):
		original = self.subscription(
			webhook_url=self.receiver.url("/original"),
			webhook_headers=[{"header": "Authorization", "value": "Bearer n8n-key-1"}],
		)
		copy = frappe.copy_doc(frappe.get_doc("Event Subscription", original.name))
		copy.subscription_name = f"{original.name}-copy"
		with self.assertRaisesRegex(frappe.ValidationError, "Authorization.*type its value again"):
			copy.insert()
		frappe.db.rollback()

	def test_cloudevents_binary_form_is_a_valid_http_cloudevent(self):
		path = f"/{self.tag}"
		doc = self.subscription(webhook_url=self.receiver.url(path), payload_form="CloudEvents binary")
		name = save_todo(self.tag)
		deliver(doc.name)
		(request,) = self.receiver.on(path)
		event = ce_http.from_binary(ce_http.HTTPMessage(request.headers, request.body), JSONFormat())
		self.assertEqual((event.get_type(), event.get_data()["entityId"]), ("todo.created", name))

	def test_a_field_selection_sends_only_the_chosen_values(self):
		path = f"/{self.tag}"
		doc = self.subscription(
			webhook_url=self.receiver.url(path),
			payload_form="Field selection",
			selected_fields="type\ntodo=data.payload.doc.description",
		)
		save_todo(self.tag)
		deliver(doc.name)
		(request,) = self.receiver.on(path)
		self.assertEqual(json.loads(request.body), {"type": "todo.created", "todo": self.tag})

	def test_a_registered_handler_runs_in_the_site_and_commits(self):
		hooks = {"fabric_handlers": {"todo.*": [f"{__name__}.record_handled"]}}
		with patch_hooks(hooks):
			doc = self.subscription(destination_type="In-app handler", handler=f"{__name__}.record_handled")
			save_todo(self.tag)
			(row,) = deliver(doc.name)
		self.assertEqual(row.status, "Delivered", row.last_error)
		event_id = json.loads(row.envelope)["id"]
		self.assertIn((event_id, "application/json"), HANDLED)
		self.assertTrue(frappe.db.exists("ToDo", {"description": f"handled {event_id}"}))

	def test_a_handlers_error_quoting_the_event_is_kept_as_text_desk_cannot_run(self):
		# Desk's Event Delivery form renders last_error as HTML and the worker writes it with SQL:
		# a handler's error quoting a published event ("User <img …> not found") ran as HTML.
		handler = f"{__name__}.look_up_user"
		with patch_hooks({"fabric_handlers": {"lore.note.*": [handler]}}):
			doc = self.subscription(
				destination_type="In-app handler",
				handler=handler,
				event_types="lore.note.*",
				condition=f'data.entityId == "{self.tag}"',
				max_attempts=1,
			)
			token = api_token(make_user("fabric-publisher@example.com", ["Fabric Publisher"]))
			payload = {"user": '<img src=x onerror="alert(1)">'}
			body = {
				"type": "lore.note.saved",
				"data": {"entity": "Note", "entityId": self.tag, "payload": payload},
			}
			published = request("post", PUBLISH, json=body, headers={"Authorization": token})
			self.assertEqual(published.status_code, 200, published.text)
			(row,) = deliver(doc.name)
		self.assertEqual(row.status, "Dead")
		self.assertIn("not found", row.last_error)
		self.assertNotIn("<", row.last_error)


class TestHandlersInARunningWorker(ReceiverCase):
	def test_a_running_worker_runs_handlers_as_the_user_the_settings_name_now(self):
		# Run handlers as was read when a worker started: a running worker went on running them
		# as the user the admin had just replaced, with that user's permissions, until restarted.
		handler = f"{__name__}.record_user"
		clerk = make_user("fabric-handler-clerk@example.com", ["Fabric Publisher"])
		name, stop = f"handler-user-{self.tag}", threading.Event()
		self.addCleanup(frappe.cache.hdel, WORKERS_KEY, name)
		RAN_AS.clear()
		with (
			patch_hooks({"fabric_handlers": {"todo.*": [handler]}}),
			patch.object(worker_module, "SETTINGS_RECHECK_SECONDS", 0.5),
			fabric_settings(handler_user="Administrator"),
		):
			self.subscription(destination_type="In-app handler", handler=handler)
			args = (frappe.local.site, frappe.local.sites_path, stop, name)
			thread = threading.Thread(target=run_worker_in_thread, args=args)
			thread.start()
			try:
				save_todo(self.tag)
				wait_for(lambda: len(RAN_AS) == 1)
				with fabric_settings(handler_user=clerk):
					time.sleep(1)  # past the worker's settings recheck
					save_todo(self.tag)
					wait_for(lambda: len(RAN_AS) == 2)
			finally:
				stop.set()
				thread.join(60)
		self.assertEqual(RAN_AS, ["Administrator", clerk])

	def test_each_event_finds_no_flag_or_message_an_earlier_handler_left_on_its_thread(self):
		# A sending thread outlives its events: flags a handler set (mute_emails, in_import…) were
		# still set for the next handler on it, and every message printed or thrown was kept for
		# good, a worker growing with each failed attempt.
		handler = f"{__name__}.note_what_is_left_over"
		name, stop = f"left-over-{self.tag}", threading.Event()
		self.addCleanup(frappe.cache.hdel, WORKERS_KEY, name)
		LEFT_OVER.clear()
		with patch_hooks({"fabric_handlers": {"todo.*": [handler]}}):
			self.subscription(destination_type="In-app handler", handler=handler)
			args = (frappe.local.site, frappe.local.sites_path, stop, name)
			thread = threading.Thread(target=run_worker_in_thread, args=args)
			thread.start()
			try:
				for count in (1, 2, 3):
					save_todo(self.tag)
					wait_for(lambda count=count: len(LEFT_OVER) == count)
			finally:
				stop.set()
				thread.join(60)
		self.assertEqual(LEFT_OVER, [(None, 0)] * 3)


class TestBrokerDestinations(ReceiverCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.broker = KafkaBroker().start()
		cls.addClassCleanup(cls.broker.stop)
		settings = fabric_settings(
			bootstrap_servers=cls.broker.bootstrap,
			rabbitmq_url=RABBITMQ,
			rabbitmq_password="guest",
			rabbitmq_exchange="fabric.test." + uuid.uuid4().hex[:6],
			topic_template="fabricdelivery" + frappe.generate_hash(length=6) + ".{domain}",
			message_timeout_ms=5000,
		)
		cls.settings = settings.__enter__()
		cls.addClassCleanup(settings.__exit__, None, None, None)
		cls.rabbit = RabbitMQ(RABBITMQ.replace("guest@", "guest:guest@"))
		cls.addClassCleanup(cls.rabbit.close)

	def bound_queue(self, exchange: str, key: str) -> str:
		"""Declares the durable topic exchange and an exclusive queue bound to it with ``key``."""
		self.addCleanup(self.rabbit.delete, (), (exchange,))
		return self.rabbit.bound_queue(exchange, key)

	def drain(self, queue: str) -> list:
		received = []
		for properties, body in self.rabbit.drain(queue):
			amqp = ce_amqp.AMQPMessage({"content-type": properties.content_type}, properties.headers, body)
			received.append((ce_amqp.from_binary(amqp, JSONFormat()), properties))
		return received

	def test_a_saved_document_reaches_a_kafka_topic_keyed_by_document(self):
		topic = f"fabric.delivery.{self.tag}"
		doc = self.subscription(destination_type="Kafka topic", kafka_topic=topic)
		name = save_todo(self.tag)
		(row,) = deliver(doc.name)
		self.assertEqual(row.status, "Delivered", row.last_error)
		(message,) = read_topic(self.broker.bootstrap, topic, 1)
		self.assertEqual(message.key().decode(), f"ToDo/{name}")
		self.assertEqual(json.loads(message.value())["data"]["entityId"], name)

	def test_a_saved_document_reaches_a_rabbitmq_exchange_as_an_amqp_cloudevent(self):
		exchange = f"fabric.delivery.{self.tag}"
		queue = self.bound_queue(exchange, "todo.#")
		doc = self.subscription(
			destination_type="RabbitMQ exchange",
			rabbitmq_exchange=exchange,
			payload_form="CloudEvents binary",
		)
		name = save_todo(self.tag)
		(row,) = deliver(doc.name)
		self.assertEqual(row.status, "Delivered", row.last_error)
		((event, properties),) = self.drain(queue)
		self.assertEqual((event.get_type(), event.get_data()["entityId"]), ("todo.created", name))
		self.assertEqual(properties.delivery_mode, 2)

	def test_a_rabbitmq_url_publishes_the_outbox_to_its_exchange_by_event_type(self):
		queue = self.bound_queue(self.settings.rabbitmq_exchange, "todo.*")
		run_relay_for(max_seconds=30, stop_when_idle=True)  # older events first
		self.drain(queue)
		name = save_todo(self.tag)
		run_relay_for(max_seconds=30, stop_when_idle=True)
		frappe.db.rollback()
		received = [event for event, _ in self.drain(queue)]
		self.assertIn(name, [e.get_data()["data"]["entityId"] for e in received])
		status = frappe.db.get_value("Event Log", {"entity_id": name}, "status")
		self.assertEqual(status, "Published", "Kafka and RabbitMQ must both have acknowledged it")

	def test_the_rabbitmq_connection_test_reports_what_it_found(self):
		report = settings_api.test_rabbitmq_connection()
		self.assertTrue(report["ok"], report)
		self.assertIn("Connected to RabbitMQ", report["summary"])
		with fabric_settings(rabbitmq_url=f"amqp://guest@127.0.0.1:{free_port()}/%2F"):
			report = settings_api.test_rabbitmq_connection()
		self.assertFalse(report["ok"])
		self.assertIn("No RabbitMQ broker answered", report["summary"])

	def test_a_malformed_rabbitmq_url_is_reported_without_the_password(self):
		# The password field is joined into the URL in memory; quoting that URL in the error
		# showed the password to anyone who runs the test, and to the Error Log.
		password = "S3cret-" + frappe.generate_hash(length=8)
		url = f"amqp://guest@127.0.0.1:{free_port()}/%2F?heartbeat=often"
		with fabric_settings(rabbitmq_url=url, rabbitmq_password=password):
			report = settings_api.test_rabbitmq_connection()
		self.assertFalse(report["ok"])
		self.assertIn("heartbeat", report["summary"])
		self.assertNotIn(password, report["summary"])
