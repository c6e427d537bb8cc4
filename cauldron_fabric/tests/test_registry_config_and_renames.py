"""What a Confluent Schema Registry user expects of the registry, over real requests and saves."""

from __future__ import annotations

import json

import frappe
from frappe.custom.doctype.custom_field.custom_field import rename_fieldname
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.tests.test_http import PASSWORD, make_user, request
from cauldron_fabric.tests.test_registry_support import (
	ORDER_V1,
	PROBE,
	PROBE_TYPE,
	drop_subjects,
	ensure_probe_doctype,
	latest,
	new_probe,
	unique_subject,
)
from cauldron_fabric.tests.utils import fabric_settings

METHOD = "/api/method/cauldron_fabric.api.schemas."
CREATED = f"{PROBE_TYPE}.created"


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


class TestCustomFieldRename(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_probe_doctype()

	def setUp(self):
		frappe.set_user("Administrator")
		drop_subjects(like=f"{PROBE_TYPE}.%")
		new_probe("derive")
		frappe.db.commit()
		self.addCleanup(drop_subjects, like=f"{PROBE_TYPE}.%")

	def test_a_renamed_custom_field_is_renamed_in_the_derived_schema(self):
		suffix = frappe.generate_hash(length=6).lower()
		old, new = f"ref_{suffix}", f"reference_{suffix}"
		field = frappe.get_doc(
			{"doctype": "Custom Field", "dt": PROBE, "fieldname": old, "label": old, "fieldtype": "Data"}
		).insert()
		frappe.db.commit()
		self.addCleanup(self.remove_field, field.name)
		self.assertEqual(latest(CREATED).version, 2)
		rename_fieldname(field.name, new)  # Desk's "Rename Fieldname" (db_set, then commits)
		with fabric_settings(invalid_event_policy="Reject"):
			# Refused while the schema (closed field list) still names the old field.
			probe = new_probe("renamed", **{new: "R-1"})
			frappe.db.rollback()
		self.assertTrue(probe.name)
		properties = json.loads(latest(CREATED).json_schema)["properties"]["doc"]["properties"]
		self.assertIn(new, properties)
		self.assertNotIn(old, properties)

	def remove_field(self, name: str) -> None:
		frappe.delete_doc("Custom Field", name, ignore_permissions=True, force=True)
		frappe.db.commit()
