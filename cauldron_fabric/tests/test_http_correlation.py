"""Over real HTTP: a caller's X-Correlation-ID is taken, returned, and replaced when malformed."""

from __future__ import annotations

from cauldron_fabric.tests.test_http_support import PASSWORD, HttpCase, api_token, request
from cauldron_fabric.tests.utils import events_after


class TestCorrelationOverHttp(HttpCase):
	"""The request's correlation id is the conversation of the events it records."""

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
