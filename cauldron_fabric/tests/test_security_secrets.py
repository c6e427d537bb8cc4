"""Over real HTTP: the broker passwords and webhook secrets are kept, never echoed.

The Kafka SASL password, the RabbitMQ password, a webhook's signing secret and its header values
live in Password fields; no answer of a connection test, status, form or Frappe's generic read
(nor the Error Log those tests leave, nor ``bench fabric status``) may carry them. Only
reveal_secret gives the signing secret, to a manager asking by POST.
"""

from __future__ import annotations

import json

import frappe

from cauldron_fabric.services.status import site_status
from cauldron_fabric.tests.test_http_support import HttpCase, api_token, request

SETTINGS = "Fabric Settings"


class TestSecretsAreNeverEchoed(HttpCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.manager_token = api_token(cls.manager)

	def setUp(self):
		super().setUp()
		self.secret = f"Sec-{frappe.generate_hash(length=16)}"

	def call(self, verb: str, method: str, **params):
		headers = {"Authorization": self.manager_token}
		url = f"/api/method/{method}"
		if verb == "get":
			return request("get", url, headers=headers, query_string=params)
		return request(verb, url, headers=headers, json=params)

	def assert_no_secret(self, response) -> None:
		self.assertNotIn(self.secret, response.get_data(as_text=True))

	def broker_settings_with_the_secret(self) -> None:
		"""Saves RabbitMQ and SASL settings that both use the secret as password (restored after)."""
		settings = frappe.get_single(SETTINGS)
		kept = {
			field: settings.get(field)
			for field in ("rabbitmq_url", "bootstrap_servers", "security_protocol", "sasl_username")
		}
		passwords = {
			field: settings.get_password(field, raise_exception=False)
			for field in ("rabbitmq_password", "sasl_password")
		}

		def restore():
			frappe.set_user("Administrator")
			settings = frappe.get_single(SETTINGS)
			settings.update({**kept, **{f: v or "" for f, v in passwords.items()}})
			settings.save()
			frappe.db.commit()

		self.addCleanup(restore)
		settings.update(
			{
				"rabbitmq_url": "amqp://guest@127.0.0.1:5672/%2F",
				"rabbitmq_password": self.secret,  # wrong: the broker refuses it
				"bootstrap_servers": "127.0.0.1:1",  # nothing listens there
				"security_protocol": "SASL_PLAINTEXT",
				"sasl_username": "fabric",
				"sasl_password": self.secret,
			}
		)
		settings.save()
		frappe.db.commit()

	def test_connection_tests_status_and_the_settings_form_never_show_the_broker_passwords(self):
		self.broker_settings_with_the_secret()
		errors_before = frappe.db.count("Error Log")
		rabbitmq = self.call("post", "cauldron_fabric.api.settings.test_rabbitmq_connection")
		self.assertEqual(rabbitmq.status_code, 200, rabbitmq.text)
		self.assertFalse(rabbitmq.json["message"]["ok"], rabbitmq.json)
		for response in (
			rabbitmq,
			self.call("post", "cauldron_fabric.api.settings.test_connection"),
			self.call("get", "cauldron_fabric.api.settings.get_status"),
			self.call("get", "frappe.client.get", doctype=SETTINGS, name=SETTINGS),
			self.call("get", "frappe.desk.form.load.getdoc", doctype=SETTINGS, name=SETTINGS),
			request(
				"get", f"/api/resource/{SETTINGS}/{SETTINGS}", headers={"Authorization": self.manager_token}
			),
		):
			with self.subTest(path=response.request.path):
				self.assertEqual(response.status_code, 200, response.text)
				self.assert_no_secret(response)
		self.assertNotIn(self.secret, json.dumps(site_status(), default=str))  # bench fabric status
		logged = frappe.get_all("Error Log", fields=["error"], order_by="creation desc", limit=20)
		self.assertTrue(all(self.secret not in (row.error or "") for row in logged))
		self.assertGreaterEqual(frappe.db.count("Error Log"), errors_before)

	def test_a_webhooks_secret_and_header_values_are_read_only_through_reveal_secret(self):
		subscription = frappe.get_doc(
			{
				"doctype": "Event Subscription",
				"subscription_name": f"secrets-{frappe.generate_hash(length=6)}",
				"enabled": 0,
				"event_types": "todo.*",
				"destination_type": "Webhook",
				"webhook_url": "https://hooks.example.com/in",
				"webhook_headers": [{"header": "Authorization", "value": f"Bearer {self.secret}"}],
			}
		).insert()
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "Event Subscription", subscription.name, force=True)
		signing = subscription.get_password("webhook_secret")
		name = subscription.name
		for response in (
			self.call("get", "frappe.client.get", doctype="Event Subscription", name=name),
			self.call("get", "frappe.desk.form.load.getdoc", doctype="Event Subscription", name=name),
			request(
				"get",
				f"/api/resource/Event Subscription/{name}",
				headers={"Authorization": self.manager_token},
			),
			self.call("get", "cauldron_fabric.api.subscriptions.get_delivery_stats", subscription=name),
		):
			with self.subTest(path=response.request.path):
				self.assertEqual(response.status_code, 200, response.text)
				self.assert_no_secret(response)
				self.assertNotIn(signing, response.get_data(as_text=True))
		revealed = self.call("post", "cauldron_fabric.api.subscriptions.reveal_secret", subscription=name)
		self.assertEqual(revealed.json["message"], {"secret": signing})
		by_get = self.call("get", "cauldron_fabric.api.subscriptions.reveal_secret", subscription=name)
		self.assertEqual(by_get.status_code, 403, by_get.text)  # a link cannot read it
