"""What a Confluent Schema Registry client expects of the compatibility config API, over HTTP."""

from __future__ import annotations

import json

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.tests.test_http_support import PASSWORD, make_user, request
from cauldron_fabric.tests.test_registry_support import (
	ORDER_V1,
	drop_subjects,
	unique_subject,
)

METHOD = "/api/method/cauldron_fabric.api.schemas."


class TestConfluentConfig(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		manager = make_user("fabric-schema-manager@example.com", ["Fabric Manager"])
		frappe.db.commit()
		cls.client = frappe.utils.get_test_client()
		response = request("post", "/api/method/login", cls.client, data={"usr": manager, "pwd": PASSWORD})
		assert response.status_code == 200, response.text

	def setUp(self):
		frappe.set_user("Administrator")
		self.subject = unique_subject()
		self.addCleanup(drop_subjects, self.subject)

	def call(self, method: str, verb: str = "get", **body):
		if verb == "get":
			return request("get", METHOD + method, self.client, query_string=body)
		return request(verb, METHOD + method, self.client, json=body)

	def test_default_to_global_true_in_the_query_string_answers_the_global_level(self):
		# Confluent clients send the flag as text: ?defaultToGlobal=true.
		registered = self.call("register", "post", subject=self.subject, schema=json.dumps(ORDER_V1))
		self.assertEqual(registered.status_code, 200, registered.text)
		answers = {
			flag: self.call("get_config", subject=self.subject, defaultToGlobal=flag).json["message"]
			for flag in ("true", "True", "1")
		}
		self.assertEqual(answers, {flag: {"compatibilityLevel": "BACKWARD"} for flag in answers})
		for flag in ("false", "0"):
			level = self.call("get_config", subject=self.subject, defaultToGlobal=flag).json["message"]
			self.assertEqual(level, {"compatibilityLevel": None}, flag)

	def test_an_unknown_subject_has_no_config(self):
		# Confluent documents GET /config/{subject} on an unknown subject as 404, error 40401.
		for flag in ("true", "false"):
			unknown = self.call("get_config", subject=self.subject, defaultToGlobal=flag)
			self.assertEqual(
				(unknown.status_code, unknown.json.get("error_code")), (404, 40401), (flag, unknown.text)
			)
			self.assertIn(self.subject, unknown.json["message"])
