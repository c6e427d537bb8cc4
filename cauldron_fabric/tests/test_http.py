"""Over real HTTP requests to the site's WSGI app: sessions, correlation ids, permissions."""

from __future__ import annotations

import json
import subprocess
import threading

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import get_test_client

from cauldron_fabric.api import events as events_api
from cauldron_fabric.api import settings as settings_api
from cauldron_fabric.tests.utils import bench_command, ensure_custom_doctype, events_after, last_seq

PASSWORD = "Fabric-Test-Pass-9!"
NEW_PASSWORD = "Fabric-Test-Pass-10!"
PERMS_PROBE = "Fabric Perms Probe"


def request(method: str, path: str, client=None, **kwargs):
	"""Sends one request through the WSGI app in its own thread, as a real request runs."""
	site = frappe.local.site
	client = client or get_test_client()
	result = {}

	kwargs["headers"] = {"X-Frappe-Site-Name": site, **kwargs.get("headers", {})}

	def run():
		result["response"] = getattr(client, method)(path, **kwargs)

	thread = threading.Thread(target=run)
	thread.start()
	thread.join()
	frappe.db.rollback()  # see what the request committed
	return result["response"]


def make_user(email: str, roles: list[str]) -> str:
	if not frappe.db.exists("User", email):
		user = frappe.get_doc(
			{"doctype": "User", "email": email, "first_name": "Fabric", "send_welcome_email": 0}
		)
		user.insert(ignore_permissions=True)
	user = frappe.get_doc("User", email)
	user.new_password = PASSWORD
	user.set("roles", [])
	user.add_roles(*roles)
	user.save(ignore_permissions=True)
	frappe.db.commit()
	return email


def api_token(email: str) -> str:
	"""Gives the user a fresh API secret; returns the Authorization header value ("token key:secret")."""
	user = frappe.get_doc("User", email)
	secret = frappe.generate_hash(length=15)
	user.api_key = user.api_key or frappe.generate_hash(length=15)
	user.api_secret = secret
	user.save(ignore_permissions=True)
	frappe.db.commit()
	return f"token {user.api_key}:{secret}"


class TestOverHttp(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.manager = make_user("fabric-manager@example.com", ["System Manager"])
		cls.clerk = make_user("fabric-clerk@example.com", ["Blogger"])

	def setUp(self):
		frappe.set_user("Administrator")
		self.start = last_seq()

	def test_login_and_logout_are_user_events(self):
		browser = get_test_client()  # keeps the session cookie between the two requests
		login = request("post", "/api/method/login", browser, data={"usr": self.clerk, "pwd": PASSWORD})
		self.assertEqual(login.status_code, 200, login.text)
		logout = request("post", "/api/method/logout", browser)
		self.assertEqual(logout.status_code, 200, logout.text)
		events = [e for e in events_after(self.start, "User", self.clerk) if e["type"].startswith("user.log")]
		self.assertEqual([e["type"] for e in events], ["user.login", "user.logout"])
		self.assertEqual(events[0]["data"]["payload"]["user"], self.clerk)
		self.assertEqual(events[0]["metadata"]["userId"], self.clerk)

	def test_a_login_with_oversized_client_headers_succeeds_and_is_a_valid_event(self):
		# The client chooses these headers (and Frappe takes X-Forwarded-For as the IP unchecked):
		# they must neither fail the login nor turn its event Invalid, unpublished.
		login = request(
			"post",
			"/api/method/login",
			data={"usr": self.clerk, "pwd": PASSWORD},
			headers={"User-Agent": "Mozilla/5.0 " + "x" * 5000, "X-Forwarded-For": "203.0.113.7" * 10},
		)
		self.assertEqual(login.status_code, 200, login.text)
		(row,) = frappe.get_all(
			"Event Log",
			filters={
				"name": (">", self.start),
				"entity": "User",
				"entity_id": self.clerk,
				"event_type": "user.login",
			},
			fields=["status", "last_error"],
		)
		self.assertNotEqual(row.status, "Invalid", row.last_error)

	def test_disabling_a_user_logs_that_user_out_not_the_admin(self):
		browser = get_test_client()
		login = request("post", "/api/method/login", browser, data={"usr": self.clerk, "pwd": PASSWORD})
		self.assertEqual(login.status_code, 200, login.text)
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.set_value, "User", self.clerk, "enabled", 1)
		admin = get_test_client()  # the admin's own Desk session
		login = request("post", "/api/method/login", admin, data={"usr": self.manager, "pwd": PASSWORD})
		self.assertEqual(login.status_code, 200, login.text)
		self.start = last_seq()
		response = request("put", f"/api/resource/User/{self.clerk}", admin, json={"enabled": 0})
		self.assertEqual(response.status_code, 200, response.text)
		logouts = [e for e in events_after(self.start) if e["type"] == "user.logout"]
		self.assertEqual([e["data"]["entityId"] for e in logouts], [self.clerk])
		self.assertEqual(logouts[0]["data"]["payload"]["user"], self.clerk)
		# The admin did it: they are the acting user, still logged in.
		self.assertEqual(logouts[0]["metadata"]["userId"], self.manager)

	def logged_in_twice(self, email: str) -> list:
		"""Makes ``email`` a user with PASSWORD (again after the test) and two sessions."""
		make_user(email, ["Blogger"])
		self.addCleanup(make_user, email, ["Blogger"])
		browsers = [get_test_client(), get_test_client()]
		for browser in browsers:
			login = request("post", "/api/method/login", browser, data={"usr": email, "pwd": PASSWORD})
			self.assertEqual(login.status_code, 200, login.text)
		self.assertEqual(frappe.db.count("Sessions", {"user": email}), 2)
		return browsers

	def logouts_of(self, email: str) -> list[dict]:
		return [e for e in events_after(self.start, "User", email) if e["type"] == "user.logout"]

	def test_a_new_password_that_logs_out_all_sessions_is_one_logout_by_the_admin(self):
		# Frappe ends them in clear_sessions(force=True), which runs no logout hook.
		user = "fabric-rotating@example.com"
		self.logged_in_twice(user)
		admin = get_test_client()
		login = request("post", "/api/method/login", admin, data={"usr": self.manager, "pwd": PASSWORD})
		self.assertEqual(login.status_code, 200, login.text)
		self.start = last_seq()
		response = request(
			"put",
			f"/api/resource/User/{user}",
			admin,
			json={"new_password": NEW_PASSWORD, "logout_all_sessions": 1},
		)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual(frappe.db.count("Sessions", {"user": user}), 0)
		logouts = self.logouts_of(user)
		self.assertEqual([e["data"]["payload"]["user"] for e in logouts], [user])
		self.assertEqual(logouts[0]["metadata"]["userId"], self.manager)

	def test_changing_ones_password_and_logging_out_elsewhere_is_one_logout(self):
		user = "fabric-rotating-self@example.com"
		here, _elsewhere = self.logged_in_twice(user)
		self.start = last_seq()
		response = request(
			"post",
			"/api/method/frappe.core.doctype.user.user.update_password",
			here,
			data={"new_password": NEW_PASSWORD, "old_password": PASSWORD, "logout_all_sessions": 1},
		)
		self.assertEqual(response.status_code, 200, response.text)
		logouts = self.logouts_of(user)
		self.assertEqual([e["data"]["payload"]["user"] for e in logouts], [user])
		self.assertEqual(logouts[0]["metadata"]["userId"], user)

	def test_a_password_reset_by_its_emailed_key_logs_the_user_out_by_the_user(self):
		# The update-password page runs as Guest; System Settings may log out every session.
		from frappe.utils import now_datetime, sha256_hash

		user = "fabric-rotating-key@example.com"
		self.logged_in_twice(user)
		key = frappe.generate_hash()
		frappe.db.set_value(
			"User",
			user,
			{"reset_password_key": sha256_hash(key), "last_reset_password_key_generated_on": now_datetime()},
		)
		frappe.db.commit()
		self.start = last_seq()
		response = request(
			"post",
			"/api/method/frappe.core.doctype.user.user.update_password",
			data={"new_password": NEW_PASSWORD, "key": key, "logout_all_sessions": 1},
		)
		self.assertEqual(response.status_code, 200, response.text)
		logouts = self.logouts_of(user)
		self.assertEqual([e["metadata"]["userId"] for e in logouts], [user])

	def test_destroying_all_sessions_is_one_logout_of_each_user_by_the_admin(self):
		# bench destroy-all-sessions ends them in clear_all_sessions, which runs no logout hook.
		user = "fabric-everyone@example.com"
		self.logged_in_twice(user)
		self.start = last_seq()
		subprocess.run(
			bench_command("destroy-all-sessions"), cwd=frappe.get_site_path(".."), check=True, timeout=120
		)
		frappe.db.rollback()  # see what the command committed
		self.assertEqual(frappe.db.count("Sessions", {"user": user}), 0)
		logouts = self.logouts_of(user)
		self.assertEqual([e["metadata"]["userId"] for e in logouts], ["Administrator"])

	def test_saving_a_user_without_a_session_is_no_logout(self):
		# Frappe "logs out" a disabled user on every save of it, session or not.
		idle = make_user("fabric-idle@example.com", ["Blogger"])
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.set_value, "User", idle, "enabled", 1)
		admin = get_test_client()
		login = request("post", "/api/method/login", admin, data={"usr": self.manager, "pwd": PASSWORD})
		self.assertEqual(login.status_code, 200, login.text)
		self.start = last_seq()
		for values in ({"enabled": 0}, {"location": frappe.generate_hash(length=8)}):
			response = request("put", f"/api/resource/User/{idle}", admin, json=values)
			self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual([e["type"] for e in events_after(self.start, "User", idle)], ["user.updated"] * 2)

	def test_an_impersonation_is_a_login_the_administrator_made(self):
		token = api_token("Administrator")
		self.start = last_seq()
		response = request(
			"post",
			"/api/method/frappe.core.doctype.user.user.impersonate",
			headers={"Authorization": token},
			data={"user": self.clerk, "reason": "support ticket 42"},
		)
		self.assertEqual(response.status_code, 200, response.text)
		logins = [e for e in events_after(self.start, "User", self.clerk) if e["type"] == "user.login"]
		self.assertEqual([e["data"]["payload"]["user"] for e in logins], [self.clerk])
		# The clerk signed in to nothing: the Administrator did, as the clerk.
		self.assertEqual(logins[0]["metadata"]["userId"], "Administrator")

	def test_the_role_permissions_manager_changes_are_system_change_events(self):
		# Its Update, Remove and Reset write Custom DocPerm rows with plain queries, no hooks.
		ensure_custom_doctype(PERMS_PROBE, [{"fieldname": "title", "fieldtype": "Data", "label": "Title"}])
		admin = get_test_client()
		login = request("post", "/api/method/login", admin, data={"usr": self.manager, "pwd": PASSWORD})
		self.assertEqual(login.status_code, 200, login.text)
		page = "/api/method/frappe.core.page.permission_manager.permission_manager"
		common = {"doctype": PERMS_PROBE, "role": "System Manager", "permlevel": 0}
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "Custom DocPerm", {"parent": PERMS_PROBE})

		def changed(method: str, **data) -> list[dict]:
			start = last_seq()
			response = request("post", f"{page}.{method}", admin, data=data)
			self.assertEqual(response.status_code, 200, response.text)
			if method == "update":
				self.assertEqual(response.json.get("message"), "refresh", "the first change copies the rules")
			return [
				e
				for e in events_after(start, "Custom DocPerm")
				if e["type"] == "system.change" and e["data"]["action"] != "created"  # created: the copy
			]

		(updated,) = changed("update", **common, ptype="export", value=0)
		self.assertEqual(updated["data"]["action"], "updated")
		self.assertEqual(updated["data"]["payload"]["changes"]["export"], {"old": 1, "new": 0})
		self.assertEqual(updated["data"]["payload"]["doc"]["parent"], PERMS_PROBE)
		self.assertEqual(updated["metadata"]["userId"], self.manager)
		request("post", f"{page}.add", admin, data={"parent": PERMS_PROBE, "role": "Blogger", "permlevel": 0})
		(removed,) = changed("remove", **common)
		self.assertEqual(
			(removed["data"]["action"], removed["data"]["payload"]["doc"]["role"]),
			("deleted", "System Manager"),
		)
		(reset,) = changed("reset", doctype=PERMS_PROBE)  # only the Blogger row was left
		self.assertEqual(
			(reset["data"]["action"], reset["data"]["payload"]["doc"]["role"]), ("deleted", "Blogger")
		)
		self.assertFalse(frappe.db.exists("Custom DocPerm", {"parent": PERMS_PROBE}))

	def test_permission_changes_take_no_get_a_link_could_send(self):
		# A GET carries no CSRF token, and the session cookie (SameSite=Lax) goes with a link an
		# admin follows from another site: a link could have given Guest read on any DocType.
		ensure_custom_doctype(PERMS_PROBE, [{"fieldname": "title", "fieldtype": "Data", "label": "Title"}])
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "Custom DocPerm", {"parent": PERMS_PROBE})
		self.addCleanup(frappe.db.delete, "User Permission", {"user": self.clerk})
		admin = get_test_client()
		login = request("post", "/api/method/login", admin, data={"usr": self.manager, "pwd": PASSWORD})
		self.assertEqual(login.status_code, 200, login.text)
		page = "/api/method/frappe.core.page.permission_manager.permission_manager"
		methods = "/api/method/frappe.core.doctype.user_permission.user_permission"
		grant = {"doctype": PERMS_PROBE, "role": "Guest", "permlevel": 0, "ptype": "read", "value": 1}
		user_permission = {
			"user": self.clerk,
			"doctype": "Role",
			"docname": "Blogger",
			"apply_to_all_doctypes": 1,
		}
		for path, query in (
			(f"{page}.update", grant),
			(f"{page}.remove", {"doctype": PERMS_PROBE, "role": "System Manager", "permlevel": 0}),
			(f"{page}.reset", {"doctype": PERMS_PROBE}),
			(f"{methods}.add_user_permissions", {"data": json.dumps(user_permission)}),
			(f"{methods}.clear_user_permissions", {"user": self.clerk, "for_doctype": "Role"}),
		):
			with self.subTest(path=path):
				response = request("get", path, admin, query_string=query)
				self.assertGreaterEqual(response.status_code, 400, response.text)
		self.assertFalse(frappe.db.exists("Custom DocPerm", {"parent": PERMS_PROBE, "role": "Guest"}))
		self.assertFalse(frappe.db.exists("User Permission", {"user": self.clerk}))

	def test_replacing_and_clearing_user_permissions_in_desk_are_system_change_events(self):
		# The User Permission list's Add / Update and Clear delete rows with plain queries, no hooks.
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "User Permission", {"user": self.clerk})
		narrow = frappe.get_doc(
			{
				"doctype": "User Permission",
				"user": self.clerk,
				"allow": "Role",
				"for_value": "Blogger",
				"apply_to_all_doctypes": 0,
				"applicable_for": "Custom Role",
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()
		admin = get_test_client()
		login = request("post", "/api/method/login", admin, data={"usr": self.manager, "pwd": PASSWORD})
		self.assertEqual(login.status_code, 200, login.text)
		methods = "/api/method/frappe.core.doctype.user_permission.user_permission"

		def changed(method: str, **data) -> list[tuple[str, str]]:
			start = last_seq()
			response = request("post", f"{methods}.{method}", admin, data=data)
			self.assertEqual(response.status_code, 200, response.text)
			events = [e for e in events_after(start, "User Permission") if e["type"] == "system.change"]
			return [(e["data"]["action"], e["data"]["entityId"]) for e in events]

		widened = changed(
			"add_user_permissions",
			data=frappe.as_json(
				{
					"user": self.clerk,
					"doctype": "Role",
					"docname": "Blogger",
					"apply_to_all_doctypes": 1,
					"applicable_doctypes": [],
				}
			),
		)
		(broad,) = frappe.get_all("User Permission", {"user": self.clerk}, pluck="name")
		self.assertEqual(sorted(widened), [("created", broad), ("deleted", narrow.name)])
		self.assertEqual(
			changed("clear_user_permissions", user=self.clerk, for_doctype="Role"), [("deleted", broad)]
		)
		self.assertFalse(frappe.db.exists("User Permission", {"user": self.clerk}))

	def test_a_login_carries_the_callers_correlation_id(self):
		# Frappe logs the user in before the before_request hooks run.
		login = request(
			"post",
			"/api/method/login",
			data={"usr": self.clerk, "pwd": PASSWORD},
			headers={"X-Correlation-ID": "sso-flow-7"},
		)
		self.assertEqual(login.status_code, 200, login.text)
		self.assertEqual(login.headers.get("X-Correlation-ID"), "sso-flow-7")
		events = [e for e in events_after(self.start, "User", self.clerk) if e["type"] == "user.login"]
		self.assertEqual([e["metadata"]["correlationId"] for e in events], ["sso-flow-7"])

	def test_correlation_id_header_is_taken_and_returned(self):
		authorization = api_token(self.manager)
		response = request(
			"post",
			"/api/resource/ToDo",
			json={"description": "correlated"},
			headers={"Authorization": authorization, "X-Correlation-ID": "order-flow-42"},
		)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual(response.headers.get("X-Correlation-ID"), "order-flow-42")
		name = response.json["data"]["name"]
		(event,) = events_after(self.start, "ToDo", name)
		self.assertEqual(event["metadata"]["correlationId"], "order-flow-42")
		self.assertEqual(event["metadata"]["userId"], self.manager)

	def test_malformed_correlation_id_is_replaced(self):
		authorization = api_token(self.manager)
		response = request(
			"post",
			"/api/resource/ToDo",
			json={"description": "bad header"},
			headers={"Authorization": authorization, "X-Correlation-ID": "<script>" * 20},
		)
		(event,) = events_after(self.start, "ToDo", response.json["data"]["name"])
		self.assertNotIn("<", event["metadata"]["correlationId"])
		self.assertEqual(response.headers.get("X-Correlation-ID"), event["metadata"]["correlationId"])

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


class TestMalformedParameters(FrappeTestCase):
	def test_each_is_a_validation_error_naming_it(self):
		# Before, each of these was an unhandled ValueError or JSONDecodeError: HTTP 500.
		from cauldron_fabric.api import approvals, dead_letters
		from cauldron_fabric.api import requests as requests_api

		frappe.set_user("Administrator")
		cases = [
			(events_api.list_events, {"limit": "abc"}, "limit"),
			(events_api.list_events, {"after": "1 or 1=1"}, "after"),
			(events_api.requeue, {"event_ids": "[bad"}, "event_ids"),
			(approvals.list_requests, {"limit": "x"}, "limit"),
			(dead_letters.retry_matching, {"limit": "x"}, "limit"),
			(dead_letters.retry_matching, {"filters": "{bad"}, "filters"),
			(dead_letters.retry, {"names": '["a"'}, "names"),
			(requests_api.send_request, {"type": "probe.request", "data": "{bad"}, "data"),
			(requests_api.send_request, {"type": "probe.request", "timeout": "abc"}, "timeout"),
		]
		for method, params, name in cases:
			with self.subTest(method=method.__name__, params=params):
				with self.assertRaises(frappe.ValidationError) as refused:
					method(**params)
				self.assertIn(name, str(refused.exception))

	def test_a_value_of_the_wrong_kind_is_a_validation_error_naming_it(self):
		# A JSON body can carry a list or an object where a text is expected: before, each of
		# these failed deep down (str methods, SQL, Redis) with HTTP 500.
		from cauldron_fabric.api import consumers, schemas
		from cauldron_fabric.api import requests as requests_api

		frappe.set_user("Administrator")
		cases = [
			(events_api.list_events, {"event_type": ["todo.*"]}, "event_type"),
			(events_api.list_events, {"entity": {"a": 1}}, "entity"),
			(events_api.get_event, {"event_id": {"a": 1}}, "event_id"),
			(events_api.get_event, {"event_id": ["like", "%"]}, "event_id"),
			(requests_api.reset_circuit, {"target": ["x"]}, "target"),
			(consumers.get_lag, {"topics": ["a", "b"]}, "topics"),
			(schemas.list_subjects, {"subjectPrefix": ["x"]}, "subjectPrefix"),
			(schemas.register, {"subject": ["x"], "schema": {"type": "object"}}, "subject"),
		]
		for method, params, name in cases:
			with self.subTest(method=method.__name__, params=params):
				with self.assertRaises(frappe.ValidationError) as refused:
					method(**params)
				self.assertIn(name, str(refused.exception))

	def test_dead_letter_filters_naming_no_field_or_of_no_kind_are_a_validation_error(self):
		# retry_matching takes a Dead Letter list filter: a misspelt field was a SQL error and a
		# number a TypeError, both HTTP 500; a text in the list went into the query as SQL of its
		# own, and a condition on another DocType joined its table (an oracle on any table).
		from cauldron_fabric.api import dead_letters

		frappe.set_user("Administrator")
		for filters, named in (
			([["subscripton", "=", "x"]], "subscripton"),
			({"evnt_type": "todo.created"}, "evnt_type"),
			(5, "filters"),
			('"text"', "filters"),
			(["1=1"], "filters"),
			([["status", "=", "Dead"], "(select count(*) from `tabSessions`) > 0"], "filters"),
			([["User", "name", "=", "Administrator"]], "User"),
			([[["status"], "=", "Dead"]], "status"),
		):
			with self.subTest(filters=filters):
				with self.assertRaises(frappe.ValidationError) as refused:
					dead_letters.retry_matching(filters=filters)
				self.assertIn(named, str(refused.exception))
		desk_filter = [
			["Dead Letter", "subscription", "=", "none-such"],
			["Dead Letter", "_assign", "like", "%x%"],
		]
		self.assertEqual(dead_letters.retry_matching(filters=desk_filter), {"done": 0, "failed": []})

	def test_a_missing_parameter_is_a_validation_error_naming_it(self):
		# Frappe calls whitelisted methods with the request's parameters: a required one left
		# out was a TypeError about positional arguments, HTTP 500.
		from cauldron_fabric.api import approvals, dead_letters, subscriptions
		from cauldron_fabric.api import requests as requests_api

		frappe.set_user("Administrator")
		cases = [
			(events_api.requeue, "event_ids"),
			(events_api.get_event, "event_id"),
			(approvals.approve, "name"),
			(approvals.reject, "name"),
			(approvals.get_request, "name"),
			(dead_letters.retry, "names"),
			(dead_letters.discard, "names"),
			(requests_api.send_request, "type"),
			(requests_api.reset_circuit, "target"),
			(subscriptions.get_delivery_stats, "subscription"),
			(subscriptions.reveal_secret, "subscription"),
			(subscriptions.send_test_event, "subscription"),
		]
		for method, name in cases:
			with self.subTest(method=f"{method.__module__}.{method.__name__}"):
				with self.assertRaisesRegex(frappe.ValidationError, f"{name} is required"):
					method()
