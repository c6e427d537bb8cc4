"""Over real HTTP requests to the site's WSGI app: logins, logouts and sessions are user events."""

from __future__ import annotations

import subprocess

import frappe
from frappe.utils import get_test_client

from cauldron_fabric.tests.test_http_support import PASSWORD, HttpCase, api_token, make_user, request
from cauldron_fabric.tests.utils import bench_command, events_after, last_seq

NEW_PASSWORD = "Fabric-Test-Pass-10!"


class TestOverHttp(HttpCase):
	"""Logging in and out, passwords changed and sessions ended, each as the user who did it."""

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
