"""The registry API over real HTTP requests: Confluent's operations, bodies, error codes and roles."""

from __future__ import annotations

import json

import frappe
from frappe.permissions import add_permission, reset_perms
from frappe.tests.utils import FrappeTestCase
from frappe.utils import get_test_client

from cauldron_fabric.api import schemas as api
from cauldron_fabric.tests.test_http_support import PASSWORD, make_user, request
from cauldron_fabric.tests.test_registry_support import (
	ORDER_V1,
	drop_subjects,
	unique_subject,
	with_property,
	without_property,
)

METHOD = "/api/method/cauldron_fabric.api.schemas."
READER_ROLE = "Fabric Schema Reader"


def session(email: str):
	"""Returns a test client logged in as ``email``."""
	client = get_test_client()
	response = request("post", "/api/method/login", client, data={"usr": email, "pwd": PASSWORD})
	assert response.status_code == 200, response.text
	return client


class TestRegistryApi(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		if not frappe.db.exists("Role", READER_ROLE):
			frappe.get_doc({"doctype": "Role", "role_name": READER_ROLE, "desk_access": 1}).insert()
		cls.manager = make_user("fabric-schema-manager@example.com", ["Fabric Manager"])
		cls.reader = make_user("fabric-schema-reader@example.com", [READER_ROLE])
		cls.stranger = make_user("fabric-schema-stranger@example.com", ["Fabric Publisher"])
		add_permission("Event Schema", READER_ROLE, 0)
		frappe.db.commit()
		cls.addClassCleanup(cls.remove_reader_permission)
		cls.managers = session(cls.manager)
		cls.readers = session(cls.reader)
		cls.strangers = session(cls.stranger)

	@classmethod
	def remove_reader_permission(cls):
		reset_perms("Event Schema")  # back to the DocType's own permissions
		frappe.clear_cache(doctype="Event Schema")
		frappe.db.commit()

	def setUp(self):
		frappe.set_user("Administrator")
		self.subject = unique_subject()
		self.addCleanup(drop_subjects, self.subject)

	def call(self, method: str, client, verb: str = "get", **body):
		if verb == "get":
			return request("get", METHOD + method, client, query_string=body)
		return request(verb, METHOD + method, client, json=body)

	def register(self, schema, client=None):
		return self.call(
			"register", client or self.managers, "post", subject=self.subject, schema=json.dumps(schema)
		)

	def test_register_list_and_read_back_a_version(self):
		first = self.register(ORDER_V1)
		self.assertEqual(first.status_code, 200, first.text)
		self.assertEqual(first.json["message"]["version"], 1)
		second = self.register(with_property(ORDER_V1, "channel", {"type": "string"}))
		self.assertEqual(second.json["message"]["version"], 2)
		self.assertEqual(self.register(ORDER_V1).json["message"], first.json["message"])  # known: same id

		subjects = self.call("list_subjects", self.readers, subjectPrefix=self.subject.split(".")[0] + ".")
		self.assertIn(self.subject, subjects.json["message"])
		self.assertEqual(
			self.call("list_versions", self.readers, subject=self.subject).json["message"], [1, 2]
		)
		got = self.call("get_version", self.readers, subject=self.subject, version="1").json["message"]
		self.assertEqual(
			{k: got[k] for k in ("subject", "version", "id", "schemaType")},
			{"subject": self.subject, "version": 1, "id": first.json["message"]["id"], "schemaType": "JSON"},
		)
		self.assertEqual(json.loads(got["schema"]), ORDER_V1)
		latest = self.call("get_version", self.readers, subject=self.subject).json["message"]
		self.assertEqual(latest["version"], 2)
		self.assertEqual(latest["dataSchema"], f"urn:cauldron:schema:{self.subject}:2")
		by_id = self.call("get_schema", self.readers, id=str(first.json["message"]["id"])).json["message"]
		self.assertEqual(json.loads(by_id["schema"]), ORDER_V1)

	def test_an_incompatible_schema_is_409_with_every_reason_in_the_body(self):
		self.register(ORDER_V1)
		breaking = with_property(without_property(ORDER_V1, "note"), "customer", {"type": "string"}, True)
		refused = self.register(breaking)
		self.assertEqual(refused.status_code, 409, refused.text)
		self.assertEqual(refused.json["error_code"], 409)
		self.assertIn("incompatible", refused.json["message"])
		self.assertEqual(len(refused.json["reasons"]), 2)
		dry = self.call("check_compatibility", self.readers, "post", subject=self.subject, schema=breaking)
		self.assertEqual(dry.status_code, 200, dry.text)
		self.assertFalse(dry.json["message"]["is_compatible"])
		self.assertEqual(len(dry.json["message"]["messages"]), 2)
		fine = self.call(
			"check_compatibility",
			self.readers,
			"post",
			subject=self.subject,
			schema=ORDER_V1,
			version="latest",
		)
		self.assertTrue(fine.json["message"]["is_compatible"])

	def test_bad_input_gets_confluent_error_codes_never_a_500(self):
		self.register(ORDER_V1)
		cases = [
			(self.call("list_versions", self.readers, subject="nothing.here"), 404, 40401),
			(self.call("list_versions", self.readers), 422, 42208),
			(self.call("register", self.managers, "post", subject=self.subject), 422, 42201),
			(self.call("register", self.managers, "post", subject=self.subject, schema="[1]"), 422, 42201),
			(self.call("get_version", self.readers, subject=self.subject, version="7"), 404, 40402),
			(self.call("get_version", self.readers, subject=self.subject, version="abc"), 422, 42202),
			(self.call("get_schema", self.readers, id="999999999"), 404, 40403),
			(self.call("register", self.managers, "post", subject=self.subject, schema="{"), 422, 42201),
			(
				self.call(
					"register", self.managers, "post", subject=self.subject, schema="{}", schemaType="AVRO"
				),
				422,
				42201,
			),
			(self.call("register", self.managers, "post", subject="Not A Subject", schema="{}"), 422, 42208),
			(
				self.call("set_config", self.managers, "put", subject=self.subject, compatibility="SIDEWAYS"),
				422,
				42203,
			),
		]
		for response, status, code in cases:
			self.assertEqual(
				(response.status_code, response.json.get("error_code")), (status, code), response.text
			)
			self.assertTrue(response.json["message"])

	def test_compatibility_levels_are_read_and_set_per_subject(self):
		self.register(ORDER_V1)
		default = self.call("get_config", self.readers).json["message"]["compatibilityLevel"]
		self.assertEqual(default, "BACKWARD")
		changed = self.call(
			"set_config", self.managers, "put", subject=self.subject, compatibility="full_transitive"
		)
		self.assertEqual(changed.json["message"], {"compatibility": "FULL_TRANSITIVE"})
		level = self.call("get_config", self.readers, subject=self.subject).json["message"]
		self.assertEqual(level, {"compatibilityLevel": "FULL_TRANSITIVE"})

	def test_reading_needs_read_permission_and_writing_a_fabric_manager(self):
		self.register(ORDER_V1)
		anonymous = request("get", METHOD + "list_subjects")
		self.assertEqual(anonymous.status_code, 403)
		stranger = self.call("list_subjects", self.strangers)
		self.assertEqual(stranger.status_code, 403)
		self.assertIn("needs read permission on Event Schema", stranger.text)  # says who may
		self.assertEqual(self.call("get_version", self.strangers, subject=self.subject).status_code, 403)
		self.assertEqual(self.call("list_subjects", self.readers).status_code, 200)
		refused = self.register(with_property(ORDER_V1, "x", {}), self.readers)
		self.assertEqual(refused.status_code, 403)
		put = self.call("set_config", self.readers, "put", subject=self.subject, compatibility="NONE")
		self.assertEqual(put.status_code, 403)
		frappe.set_user(self.reader)
		self.assertRaises(frappe.PermissionError, api.register, self.subject, ORDER_V1)
		self.assertRaises(frappe.PermissionError, api.set_config, self.subject, "NONE")
		frappe.set_user(self.stranger)
		self.assertRaises(frappe.PermissionError, api.list_subjects)
		self.assertRaises(frappe.PermissionError, api.asyncapi)

	def test_a_subject_whose_versions_were_all_deleted_is_not_found(self):
		# Confluent answers 40401 (subject not found), not 40402, once no version of it is left.
		registered = self.register(ORDER_V1)
		frappe.delete_doc("Event Schema", registered.json["message"]["id"], ignore_permissions=True)
		frappe.db.commit()
		self.assertNotIn(self.subject, self.call("list_subjects", self.readers).json["message"])
		for response in (
			self.call("list_versions", self.readers, subject=self.subject),
			self.call("get_version", self.readers, subject=self.subject),
			self.call("get_version", self.readers, subject=self.subject, version="1"),
		):
			self.assertEqual(
				(response.status_code, response.json.get("error_code")), (404, 40401), response.text
			)
		again = self.register(ORDER_V1)
		self.assertEqual(again.json["message"]["version"], 2, "a number is never given twice")
		self.assertEqual(self.call("list_versions", self.readers, subject=self.subject).json["message"], [2])

	def test_schema_references_are_refused_not_ignored(self):
		# A schema with references means the referenced schemas too: registering it without
		# them would register a different schema. Empty references mean none, as Confluent has it.
		references = [{"name": "customer.json", "subject": "customer.created", "version": 1}]
		for method in ("register", "check_compatibility"):
			refused = self.call(
				method, self.managers, "post", subject=self.subject, schema=ORDER_V1, references=references
			)
			self.assertEqual(
				(refused.status_code, refused.json.get("error_code")), (422, 42201), refused.text
			)
			self.assertIn("references are not supported", refused.json["message"])
		self.assertEqual(self.call("list_versions", self.readers, subject=self.subject).status_code, 404)
		accepted = self.call(
			"register",
			self.managers,
			"post",
			subject=self.subject,
			schema=json.dumps(ORDER_V1),
			references=[],
		)
		self.assertEqual(accepted.status_code, 200, accepted.text)
