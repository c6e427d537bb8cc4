"""Over real HTTP: who may read and count events, and what the list's filters may not run."""

from __future__ import annotations

import json

import frappe
from frappe.desk.form import assign_to

from cauldron_fabric.api import events as events_api
from cauldron_fabric.api import settings as settings_api
from cauldron_fabric.tests.test_http_support import HttpCase, api_token, request


class TestEventAccessOverHttp(HttpCase):
	"""The events API and Frappe's counts check permission before they read the Event Log."""

	def test_event_api_needs_a_role_that_may_read_events(self):
		anonymous = request("get", "/api/method/cauldron_fabric.api.events.list_events")
		self.assertEqual(anonymous.status_code, 403)
		frappe.set_user(self.clerk)
		self.assertRaises(frappe.PermissionError, events_api.list_events)
		self.assertRaises(frappe.PermissionError, events_api.requeue, ["x"])
		self.assertRaises(frappe.PermissionError, settings_api.test_connection)
		self.assertRaises(frappe.PermissionError, settings_api.get_status)
		frappe.set_user(self.manager)
		self.assertIsInstance(events_api.list_events(limit=1)["events"], list)

	def test_counting_events_needs_read_permission_on_the_event_log(self):
		# A count filtered on the envelope's text answers yes or no for any value in the payloads
		# (a salary, a password hash): counted by someone who may not read Event Log, it would
		# read them one guess at a time.
		token = frappe.generate_hash(length=12)
		frappe.get_doc({"doctype": "ToDo", "description": f"secret {token}"}).insert()
		frappe.db.commit()
		query = {"doctype": "Event Log", "filters": json.dumps({"envelope": ("like", f"%{token}%")})}

		def count(user: str):
			return request(
				"get",
				"/api/method/frappe.client.get_count",
				headers={"Authorization": api_token(user)},
				query_string=query,
			)

		self.assertEqual(count(self.clerk).status_code, 403)
		self.assertEqual(count(self.manager).json["message"], 1)
		# Checked as Frappe's list checks its filters: a text condition is no SQL of its own.
		query["filters"] = json.dumps(["(select count(*) from `tabSessions`) < 0"])
		self.assertGreaterEqual(count(self.manager).status_code, 400)

	def test_counts_of_other_doctypes_cover_only_what_the_caller_may_read(self):
		# Frappe v15 counts any DocType for any user: an approver's note on an approval request
		# (a Comment) or a ToDo's text could be read one guess at a time by counting.
		token = frappe.generate_hash(length=12)
		todo = frappe.get_doc({"doctype": "ToDo", "description": f"note {token}"}).insert()
		todo.add_comment("Comment", f"approver note {token}")
		frappe.db.commit()

		def count(user: str, doctype: str, field: str):
			query = {"doctype": doctype, "filters": json.dumps({field: ("like", f"%{token}%")})}
			return request(
				"get",
				"/api/method/frappe.client.get_count",
				headers={"Authorization": api_token(user)},
				query_string=query,
			)

		self.assertEqual(count(self.clerk, "Comment", "content").status_code, 403)
		self.assertEqual(count(self.manager, "Comment", "content").json["message"], 1)
		# The clerk reads ToDos but only their own and those assigned to them.
		self.assertEqual(count(self.clerk, "ToDo", "description").json["message"], 0)
		self.assertEqual(count(self.manager, "ToDo", "description").json["message"], 1)

		# The sidebar's "Assigned To" counts tell who works on the documents a filter matches.
		assign_to.add({"doctype": "ToDo", "name": todo.name, "assign_to": [self.manager]})
		frappe.db.commit()

		def assignees(user: str):
			query = {
				"doctype": "ToDo",
				"current_filters": json.dumps([["ToDo", "description", "like", f"%{token}%"]]),
				"field": "assigned_to",
			}
			response = request(
				"get",
				"/api/method/frappe.desk.listview.get_group_by_count",
				headers={"Authorization": api_token(user)},
				query_string=query,
			)
			return [row["name"] for row in response.json["message"]]

		self.assertEqual(assignees(self.clerk), [])
		self.assertEqual(assignees(self.manager), [self.manager])

	def test_a_child_table_is_counted_for_the_parent_named_with_it(self):
		# Frappe's get_list needs a child table's parent: without one a System Manager, who
		# could count Has Role before, got a 403 saying Has Role is no parent of Has Role.
		def count(user: str, **extra):
			query = {"doctype": "Has Role", "filters": json.dumps({"role": "System Manager"}), **extra}
			return request(
				"get",
				"/api/method/frappe.client.get_count",
				headers={"Authorization": api_token(user)},
				query_string=query,
			)

		refused = count(self.manager)
		self.assertEqual(refused.status_code, 417)
		self.assertIn("parent_doctype", refused.json["exception"])
		expected = frappe.db.count("Has Role", {"role": "System Manager"})
		self.assertEqual(count(self.manager, parent_doctype="User").json["message"], expected)
		self.assertEqual(count(self.clerk, parent_doctype="Page").status_code, 403)  # no read on Page

	def test_filters_that_are_not_json_are_refused_with_what_they_must_be(self):
		response = request(
			"get",
			"/api/method/frappe.client.get_count",
			headers={"Authorization": api_token(self.manager)},
			query_string={"doctype": "ToDo", "filters": "status='Open'"},
		)
		self.assertEqual(response.status_code, 417)
		self.assertIn("Filters must be JSON", response.json["exception"])

	def test_counting_a_doctype_that_does_not_exist_says_so(self):
		# Frappe's count ran its query on a table that does not exist: a 500 with the database's error.
		response = request(
			"get",
			"/api/method/frappe.client.get_count",
			headers={"Authorization": api_token(self.manager)},
			query_string={"doctype": "No Such DocType"},
		)
		self.assertEqual(response.status_code, 404, response.text)
		self.assertIn("There is no DocType No Such DocType", response.text)
		self.assertNotIn("ProgrammingError", response.text)

	def test_the_list_sidebar_counts_run_no_sql_their_caller_wrote(self):
		# Frappe's get_group_by_count hands its filters to frappe.get_list unchecked, which takes a
		# text condition as SQL: any user could run a subquery on any table (here one that does
		# not exist, whose error showed it ran).
		query = {
			"doctype": "ToDo",
			"current_filters": json.dumps(["1=(select count(*) from `tabNoSuchTable`)"]),
			"field": "status",
		}
		response = request(
			"get",
			"/api/method/frappe.desk.listview.get_group_by_count",
			headers={"Authorization": api_token(self.clerk)},
			query_string=query,
		)
		self.assertLess(response.status_code, 500, response.text)
		self.assertNotIn("NoSuchTable", response.text)
		query["current_filters"] = json.dumps([["ToDo", "status", "=", "Open"]])
		response = request(
			"get",
			"/api/method/frappe.desk.listview.get_group_by_count",
			headers={"Authorization": api_token(self.manager)},
			query_string=query,
		)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertTrue(all(row["name"] == "Open" for row in response.json["message"]))

	def test_bad_limit_is_a_clear_validation_error(self):
		with self.assertRaisesRegex(frappe.ValidationError, "limit must be between 1 and 500"):
			events_api.list_events(limit=0)
