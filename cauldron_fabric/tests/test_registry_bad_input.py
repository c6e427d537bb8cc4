"""The registry API answers hostile input found by fuzzing with Confluent's errors, never a 500.

Each case once failed over HTTP: deep schemas with RecursionError (or Werkzeug's HTML page),
a schemaType that is no text with AttributeError, oversized or non-text owner and description
fields with a database error, and ids of superscript or full-width digits with ValueError or
the wrong schema. Every request goes through the site's WSGI app, as a client's does.
"""

from __future__ import annotations

import json

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.core.schema.depth import MAX_SCHEMA_DEPTH
from cauldron_fabric.registry import versions
from cauldron_fabric.tests.test_http_support import make_user, request
from cauldron_fabric.tests.test_registry_api import METHOD, session
from cauldron_fabric.tests.test_registry_support import ORDER_V1, drop_subjects, unique_subject


def nested_properties(levels: int, leaf: dict | None = None) -> dict:
	"""Returns an object schema whose single property nests ``levels`` objects deep."""
	schema = leaf or {"type": "string"}
	for _ in range(levels):
		schema = {"type": "object", "properties": {"a": schema}}
	return schema


def nested_list(levels: int) -> list:
	value: list = []
	for _ in range(levels - 1):
		value = [value]
	return value


class TestRegistryBadInput(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.manager = make_user("fabric-schema-manager@example.com", ["Fabric Manager"])
		cls.managers = session(cls.manager)

	def setUp(self):
		frappe.set_user("Administrator")
		self.subject = unique_subject()
		self.addCleanup(drop_subjects, self.subject)

	def call(self, method: str, verb: str = "post", **body):
		if verb == "get":
			return request("get", METHOD + method, self.managers, query_string=body)
		return request(verb, METHOD + method, self.managers, json=body)

	def register(self, schema=ORDER_V1, **fields):
		return self.call("register", subject=self.subject, schema=json.dumps(schema), **fields)

	def assertRefused(self, response, status: int, code: int, *words: str):
		self.assertEqual(
			(response.status_code, response.json.get("error_code")), (status, code), response.text
		)
		for word in words:
			self.assertIn(word, response.json["message"])

	def assertNothingRegistered(self):
		self.assertEqual(self.call("list_versions", "get", subject=self.subject).status_code, 404)

	def test_a_schema_nested_too_deeply_is_422_saying_how_deep_and_the_limit(self):
		self.register()
		limit = f"at most {MAX_SCHEMA_DEPTH} levels"
		for levels in (96, 300):
			deep = nested_properties(levels)
			depth = f"{2 * levels + 1} levels deep"
			for schema in (deep, json.dumps(deep)):  # as an object and as JSON text
				with self.subTest(levels=levels, text=isinstance(schema, str)):
					for method in ("register", "check_compatibility"):
						refused = self.call(method, subject=self.subject, schema=schema)
						self.assertRefused(refused, 422, 42201, depth, limit)
		# Thousands of levels exhaust the JSON decoder itself: still the same answer.
		text = '{"not":' * 5000 + "{}" + "}" * 5000
		refused = self.call("register", subject=self.subject, schema=text)
		self.assertRefused(refused, 422, 42201, "5001 levels deep", limit)
		self.assertEqual(self.call("list_versions", "get", subject=self.subject).json["message"], [1])

	def test_a_schema_at_the_limit_is_registered_and_compared(self):
		levels = (MAX_SCHEMA_DEPTH - 1) // 2
		first = self.register(nested_properties(levels, {"type": "integer"}))
		self.assertEqual(first.status_code, 200, first.text)
		dry = self.call(
			"check_compatibility", subject=self.subject, schema=nested_properties(levels, {"type": "string"})
		)
		self.assertEqual(dry.status_code, 200, dry.text)
		self.assertEqual([r["rule"] for r in dry.json["message"]["reasons"]], ["TYPE_CHANGED"])

	def test_an_earlier_version_deeper_than_the_limit_is_422_not_a_500(self):
		# As a version registered before the limit was: derived schemas are not checked again.
		versions.register_derived(
			self.subject,
			nested_properties(MAX_SCHEMA_DEPTH),
			reference_doctype="ToDo",
			owner_team="Core",
			description="deep",
		)
		frappe.db.commit()
		refused = self.call("check_compatibility", subject=self.subject, schema=ORDER_V1)
		self.assertRefused(refused, 422, 42201, "version 1: The schema nests objects and arrays")

	def test_examples_nested_too_deeply_are_422(self):
		refused = self.register(examples=[nested_list(MAX_SCHEMA_DEPTH + 1)])
		self.assertRefused(refused, 422, 42201, "Example 1", f"at most {MAX_SCHEMA_DEPTH} levels")
		refused = self.register(examples="[" * 5000 + "]" * 5000)
		self.assertRefused(refused, 422, 42201, "The JSON of the examples nests", "5000 levels deep")
		self.assertNothingRegistered()

	def test_a_schema_type_that_is_no_text_is_422_naming_it_and_the_allowed_value(self):
		for schema_type in (5, True, ["JSON"], {"type": "JSON"}, "AVRO"):
			for method in ("register", "check_compatibility"):
				with self.subTest(method=method, schemaType=schema_type):
					refused = self.call(method, subject=self.subject, schema=ORDER_V1, schemaType=schema_type)
					self.assertRefused(refused, 422, 42201, "schemaType", '"JSON"')
		for schema_type in ("JSON", "json", "", None):
			with self.subTest(schemaType=schema_type):
				dry = self.call(
					"check_compatibility", subject=self.subject, schema=ORDER_V1, schemaType=schema_type
				)
				self.assertEqual(dry.status_code, 200, dry.text)
		self.assertNothingRegistered()

	def test_free_text_fields_are_checked_for_kind_and_length_before_anything_is_written(self):
		cases = [
			({"description": "d" * 100_000}, "description", "100000 bytes", "65535"),
			({"description": "é" * 40_000}, "description", "80000 bytes", "65535"),  # bytes, not characters
			({"description": {"text": "x"}}, "description", "must be a text", "an object"),
			({"ownerUser": {"name": ["like", "%"]}}, "ownerUser", "must be a text", "an object"),
			({"ownerUser": ["Administrator"]}, "ownerUser", "must be a text", "an array"),
			({"ownerTeam": "t" * 1000}, "ownerTeam", "1000 characters", "140"),
			({"ownerTeam": 7}, "ownerTeam", "must be a text", "not 7"),
			# Frappe escapes markup after its own length check: 108 characters are kept as 508.
			({"ownerTeam": "<i>a</i>" + "&" * 100}, "ownerTeam", "508 characters", "markup", "140"),
			({"ownerUser": "u" * 141}, "ownerUser", "141 characters", "140"),
		]
		for fields, *words in cases:
			with self.subTest(fields=list(fields)):
				self.assertRefused(self.register(**fields), 422, 42201, *words)
		self.assertNothingRegistered()
		fitting = self.register(ownerTeam="t" * 140, ownerUser="Administrator", description="é" * 30_000)
		self.assertEqual(fitting.status_code, 200, fitting.text)
		doc = frappe.get_doc("Event Schema", fitting.json["message"]["id"])
		self.assertEqual((len(doc.owner_team), len(doc.description)), (140, 30_000))

	def test_schema_ids_and_versions_are_ascii_digits_only(self):
		registered = self.register()
		schema_id = registered.json["message"]["id"]
		found = self.call("get_schema", "get", id=str(schema_id))
		self.assertEqual(found.status_code, 200, found.text)
		full_width = "".join(chr(0xFF10 + int(d)) for d in str(schema_id))
		for bad in ("\u00b2", full_width, "1_0", "9" * 5000, "-1", "0x1"):
			with self.subTest(id=bad):
				self.assertRefused(self.call("get_schema", "get", id=bad), 404, 40403)
		for bad in ({"id": 1}, [schema_id], True):  # a JSON body carries any kind of value
			with self.subTest(id=bad):
				response = request("get", METHOD + "get_schema", self.managers, json={"id": bad})
				self.assertRefused(response, 404, 40403, "must be a number")
		for bad in ("\u00b2", "\uff11", "1_0", "9" * 5000):
			with self.subTest(version=bad):
				response = self.call("get_version", "get", subject=self.subject, version=bad)
				self.assertRefused(response, 422, 42202)
		self.assertEqual(self.call("get_version", "get", subject=self.subject, version="1").status_code, 200)

	def test_a_newline_makes_no_subject(self):
		# A trailing newline is trimmed like any whitespace; one inside the name is refused.
		self.assertRefused(
			self.call("register", subject="sales_order.created\nx.y", schema=ORDER_V1),
			422,
			42208,
			"not an event type",
		)
		dry = self.call("check_compatibility", subject=self.subject + "\n", schema=ORDER_V1)
		self.assertEqual(dry.status_code, 200, dry.text)

	def test_values_nested_deep_where_texts_belong_are_refused_by_kind(self):
		# Quoting such a value with repr() in the message recursed past the stack.
		deep = {"a": nested_list(400)}
		cases = [
			(self.call("register", subject=deep, schema=ORDER_V1), 422, 42208),
			(self.call("set_config", "put", subject=self.subject, compatibility=deep), 422, 42203),
			(self.call("register", subject=self.subject, schema=ORDER_V1, ownerTeam=deep), 422, 42201),
			(self.call("register", subject=self.subject, schema=ORDER_V1, references="[" * 5000), 422, 42201),
		]
		for response, status, code in cases:
			self.assertRefused(response, status, code)

	def test_verbose_false_sent_as_text_leaves_the_reasons_out(self):
		# A form or query string sends "false", a text, which was true.
		self.register()
		form = {"subject": self.subject, "schema": json.dumps(ORDER_V1), "verbose": "false"}
		terse = request("post", METHOD + "check_compatibility", self.managers, data=form)
		self.assertEqual(terse.json["message"], {"is_compatible": True})
		verbose = self.call("check_compatibility", subject=self.subject, schema=ORDER_V1)
		self.assertIn("messages", verbose.json["message"])
