"""What the publish API test modules share: a publisher with its API key, and publishing as it."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.tests.test_approval_support import ensure_people
from cauldron_fabric.tests.test_delivery_support import marker
from cauldron_fabric.tests.test_http_support import api_token, make_user, request
from cauldron_fabric.tests.utils import last_seq

URL = "/api/method/cauldron_fabric.api.publish.publish"


class PublishCase(FrappeTestCase):
	"""A publisher and a clerk with API keys; each test marks where the Event Log stood."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.publisher = make_user("fabric-publisher@example.com", ["Fabric Publisher"])
		cls.token = api_token(cls.publisher)
		cls.clerk_token = api_token(make_user("fabric-clerk@example.com", ["Blogger"]))
		ensure_people()

	def setUp(self):
		frappe.set_user("Administrator")
		self.start = last_seq()
		self.tag = marker()

	def publish(self, body, token=None, **headers):
		headers = {"Authorization": token or self.token, **headers}
		return request("post", URL, json=body, headers=headers)
