"""Over real HTTP: every fabric endpoint refuses who may not use it, plainly, before it does any work.

A user with no Fabric role (a Blogger), and Guest, call each method of ``cauldron_fabric.api``
with no arguments: each must answer 403 with a message and no traceback, not a validation error
about the arguments (read before the permission) or a 500. A new endpoint must be listed here,
or the sweep fails: it is then checked like the others.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import frappe

from cauldron_fabric import api
from cauldron_fabric.tests.test_http_support import HttpCase, api_token, request

# Every whitelisted method of cauldron_fabric.api, with the one HTTP method it takes (the counts
# stand in for Frappe's own, which Desk calls with any method: they only read).
ENDPOINTS = {
	"approvals.approve": "post",
	"approvals.reject": "post",
	"approvals.get_request": "get",
	"approvals.list_requests": "get",
	"consumers.get_consumers": "get",
	"consumers.get_lag": "get",
	"counts.get_count": "any",
	"counts.get_group_by_count": "any",
	"dead_letters.retry": "post",
	"dead_letters.discard": "post",
	"dead_letters.retry_matching": "post",
	"events.list_events": "get",
	"events.get_event": "get",
	"events.requeue": "post",
	"publish.publish": "post",
	"requests.send_request": "post",
	"requests.get_circuits": "get",
	"requests.reset_circuit": "post",
	"schemas.list_subjects": "get",
	"schemas.list_versions": "get",
	"schemas.get_version": "get",
	"schemas.get_schema": "get",
	"schemas.register": "post",
	"schemas.check_compatibility": "post",
	"schemas.get_config": "get",
	"schemas.set_config": "put",
	"schemas.asyncapi": "get",
	"settings.test_connection": "post",
	"settings.test_rabbitmq_connection": "post",
	"settings.get_status": "get",
	"subscriptions.get_delivery_stats": "get",
	"subscriptions.reveal_secret": "post",
	"subscriptions.new_secret": "post",
	"subscriptions.list_handlers": "get",
	"subscriptions.send_test_event": "post",
}
# Open to every logged-in user by design, each narrowing what it answers to what the caller may see:
# approvers are any users a request names, and Frappe's counts are every list's.
EVERY_USER = {
	"approvals.approve": {"name": "none-such"},
	"approvals.reject": {"name": "none-such"},
	"approvals.get_request": {"name": "none-such"},
	"approvals.list_requests": {},
	"counts.get_count": {"doctype": "Event Log"},
	"counts.get_group_by_count": {"doctype": "Event Log", "field": "status"},
}


def whitelisted_api_methods() -> dict[str, object]:
	"""Returns every whitelisted function of the cauldron_fabric.api modules by ``module.name``."""
	found = {}
	for module_info in pkgutil.iter_modules(api.__path__):
		module = importlib.import_module(f"{api.__name__}.{module_info.name}")
		for name, function in inspect.getmembers(module, inspect.isfunction):
			if function.__module__ == module.__name__ and function in frappe.whitelisted:
				found[f"{module_info.name}.{name}"] = function
	return found


class TestEndpointPermissions(HttpCase):
	"""Who may call what, over real requests with API keys."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.clerk_token = api_token(cls.clerk)

	def call(self, path: str, verb: str, token: str | None = None, **params):
		headers = {"Authorization": token} if token else {}
		url = f"/api/method/cauldron_fabric.api.{path}"
		if verb in ("get", "any"):
			return request("get", url, headers=headers, query_string=params)
		return request(verb, url, headers=headers, json=params)

	def test_every_endpoint_is_listed_with_the_one_http_method_it_takes(self):
		methods = whitelisted_api_methods()
		self.assertEqual(sorted(methods), sorted(ENDPOINTS), "list a new endpoint in ENDPOINTS")
		for path, function in methods.items():
			with self.subTest(path=path):
				taken = frappe.allowed_http_methods_for_whitelisted_func[function]
				expected = (
					["GET", "POST", "PUT", "DELETE"]
					if ENDPOINTS[path] == "any"
					else [ENDPOINTS[path].upper()]
				)
				self.assertEqual(taken, expected)
				self.assertNotIn(function, frappe.guest_methods, "no fabric endpoint is open to Guest")

	def test_a_user_without_a_fabric_role_is_refused_before_any_argument_is_read(self):
		for path, verb in ENDPOINTS.items():
			if path in EVERY_USER:
				continue
			with self.subTest(path=path):
				response = self.call(path, verb, self.clerk_token)
				self.assertEqual(response.status_code, 403, response.text)
				self.assert_plain_refusal(response)

	def test_guest_is_refused_every_endpoint(self):
		for path, verb in ENDPOINTS.items():
			with self.subTest(path=path):
				response = self.call(path, verb, **EVERY_USER.get(path, {}))
				self.assertEqual(response.status_code, 403, response.text)

	def test_the_endpoints_every_user_may_call_answer_only_for_what_they_may_see(self):
		for path, params in EVERY_USER.items():
			with self.subTest(path=path):
				response = self.call(path, ENDPOINTS[path], self.clerk_token, **params)
				if path == "approvals.list_requests":
					# Desk users read the requests they may decide; a Blogger decides none.
					self.assertEqual(response.status_code, 200, response.text)
					self.assertEqual(response.json["message"], {"requests": []})
					continue
				self.assertEqual(response.status_code, 403, response.text)
				self.assert_plain_refusal(response)

	def assert_plain_refusal(self, response) -> None:
		"""A refusal is a PermissionError with a message of its own, not a failure of the arguments.

		(Whether a traceback goes along is the site's System Settings, Allow error traceback.)
		"""
		body = response.json
		self.assertEqual(body.get("exc_type"), "PermissionError", body)
		messages = frappe.parse_json(body.get("_server_messages") or "[]")
		self.assertTrue(messages, body)
		text = frappe.parse_json(messages[0]).get("message", "")
		self.assertNotIn("Traceback", text)
		self.assertTrue(text.strip(), body)
