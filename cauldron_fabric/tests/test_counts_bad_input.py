"""Frappe's count endpoints, as the fabric overrides them, refuse bad input with an error naming it.

Each refused call here was an HTTP 500 before (a TypeError, an IndexError, a database error); each
valid one still counts what the caller may list.
"""

from __future__ import annotations

import json

import frappe
from frappe.desk.form import assign_to
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import counts
from cauldron_fabric.consume.requesting import site_breaker
from cauldron_fabric.tests.test_http_support import make_user

MANAGER = "counts-manager@example.com"
CLERK = "counts-clerk@example.com"  # a Blogger: may read ToDos, not settings or circuits


class TestCountsRefuseBadInput(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		make_user(MANAGER, ["System Manager"])
		make_user(CLERK, ["Blogger"])

	def setUp(self):
		frappe.set_user("Administrator")
		self.token = frappe.generate_hash(length=12)
		self.todos = [
			frappe.get_doc({"doctype": "ToDo", "description": f"count {self.token}", "status": status})
			.insert()
			.name
			for status in ("Open", "Open", "Closed")
		]
		frappe.set_user(MANAGER)

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.delete("ToDo", {"name": ["in", self.todos]})
		frappe.db.delete("ToDo", {"reference_name": ["in", self.todos]})
		super().tearDown()

	def test_a_count_without_a_doctype_says_it_is_required(self):
		with self.assertRaisesRegex(frappe.ValidationError, "doctype is required"):
			counts.get_count()

	def test_filters_of_no_shape_frappe_reads_are_refused_naming_the_bad_part(self):
		cases = [
			("5", "not 5"),
			("true", "not True"),
			('"status"', "not 'status'"),
			('["x"]', "hold a text where a condition belongs"),
			('[["status", "=", "Open"], "(select 1) = 1"]', "hold a text where a condition belongs"),
			('[["x"]]', "hold ['x']"),
			("[null]", "hold None"),
			("[[]]", "hold []"),
			('[{"status": "Open"}]', "hold {'status': 'Open'}"),
			('{"name": [null]}', "hold {'name': [None]}"),
			('{"name": {"a": 1}}', "hold {'name': {'a': 1}}"),
			('[["status", 5, "Open"]]', "an operator is a text"),
			('[["status", "=", {"a": 1}]]', "a value is a text"),
			('[["owner.name", "=", "x"]]', "hold ['owner.name'"),
			('[[null, "status", "=", "Open"]]', "a DocType and a field are named by a text"),
		]
		for filters, named in cases:
			with self.subTest(filters=filters):
				with self.assertRaises(frappe.ValidationError) as refused:
					counts.get_count("ToDo", filters)
				message = str(refused.exception)
				self.assertTrue(message.startswith("filters "), message)
				self.assertIn(named, message)

	def test_valid_filters_count_as_before(self):
		like = ["like", f"%{self.token}%"]
		cases = [
			({"description": like}, 3),
			({"description": like, "status": "Open"}, 2),
			([["description", *like], ["status", "=", "Closed"]], 1),
			([["ToDo", "description", *like], ["ToDo", "name", "in", self.todos[:2]]], 2),
			# The list view sends a fifth part, which Frappe ignores.
			([["ToDo", "description", *like, False]], 3),
		]
		for filters, expected in cases:
			with self.subTest(filters=filters):
				self.assertEqual(counts.get_count("ToDo", json.dumps(filters)), expected)
				self.assertEqual(counts.get_count("ToDo", filters), expected)
		self.assertEqual(counts.get_count("ToDo", ""), counts.get_count("ToDo", "[]"))

	def test_a_single_doctype_is_refused_as_uncountable_to_those_who_may_read_it(self):
		for doctype in ("Fabric Settings", "System Settings"):
			with self.subTest(doctype=doctype):
				frappe.set_user(MANAGER)
				with self.assertRaisesRegex(frappe.ValidationError, f"{doctype} is a Single DocType"):
					counts.get_count(doctype)
				frappe.set_user(CLERK)
				with self.assertRaisesRegex(frappe.PermissionError, f"You may not read {doctype}"):
					counts.get_count(doctype)

	def test_a_virtual_doctype_is_counted_through_its_controller_for_those_who_may_read_it(self):
		target = f"counts-{self.token}"
		self.addCleanup(site_breaker().store.reset, target)
		site_breaker().failed(target)
		self.assertEqual(counts.get_count("Fabric Circuit", json.dumps({"target": target})), 1)
		self.assertEqual(counts.get_count("Fabric Circuit", json.dumps({"target": "none-such"})), 0)
		frappe.set_user(CLERK)
		with self.assertRaisesRegex(frappe.PermissionError, "You may not read Fabric Circuit"):
			counts.get_count("Fabric Circuit")

	def test_sidebar_counts_without_their_parameters_say_which_is_required(self):
		with self.assertRaisesRegex(frappe.ValidationError, "doctype is required"):
			counts.get_group_by_count()
		with self.assertRaisesRegex(frappe.ValidationError, "field is required"):
			counts.get_group_by_count("ToDo", "[]")

	def test_sidebar_counts_of_a_doctype_that_does_not_exist_say_so(self):
		with self.assertRaisesRegex(frappe.DoesNotExistError, "There is no DocType nosuch"):
			counts.get_group_by_count("nosuch", "[]", "assigned_to")

	def test_sidebar_counts_by_a_field_the_doctype_lacks_name_it(self):
		with self.assertRaisesRegex(frappe.ValidationError, "ToDo has no field 'nosuchfield'"):
			counts.get_group_by_count("ToDo", "[]", "nosuchfield")

	def test_sidebar_counts_with_bad_filters_name_current_filters(self):
		for filters in ("5", '["x"]', '{"name": {"a": 1}}'):
			with self.subTest(filters=filters):
				with self.assertRaisesRegex(frappe.ValidationError, "^current_filters "):
					counts.get_group_by_count("ToDo", filters, "status")

	def test_sidebar_counts_of_a_single_or_virtual_doctype_are_refused_after_the_permission_check(self):
		cases = [
			("System Settings", "assigned_to", "is a Single DocType"),
			("Fabric Settings", "owner", "is a Single DocType"),
			("Fabric Circuit", "assigned_to", "is a virtual DocType"),
		]
		for doctype, field, kind in cases:
			with self.subTest(doctype=doctype, field=field):
				frappe.set_user(MANAGER)
				with self.assertRaisesRegex(frappe.ValidationError, f"{doctype} {kind}"):
					counts.get_group_by_count(doctype, "[]", field)
				frappe.set_user(CLERK)
				with self.assertRaisesRegex(frappe.PermissionError, f"You may not read {doctype}"):
					counts.get_group_by_count(doctype, "[]", field)

	def test_valid_sidebar_counts_count_as_before(self):
		frappe.set_user("Administrator")
		assign_to.add({"doctype": "ToDo", "name": self.todos[0], "assign_to": [MANAGER]})
		frappe.set_user(MANAGER)
		filters = json.dumps([["ToDo", "description", "like", f"%{self.token}%"]])
		by_status = counts.get_group_by_count("ToDo", filters, "status")
		self.assertEqual({row.name: row.count for row in by_status}, {"Open": 2, "Closed": 1})
		assignees = counts.get_group_by_count("ToDo", filters, "assigned_to")
		self.assertEqual([(row.name, row.count) for row in assignees], [(MANAGER, 1)])
		frappe.set_user(CLERK)  # sees none of the Administrator's ToDos
		self.assertEqual(counts.get_group_by_count("ToDo", filters, "assigned_to"), [])
