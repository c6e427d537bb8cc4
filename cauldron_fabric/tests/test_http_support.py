"""Helpers of the tests over real HTTP: requests through the site's WSGI app, users, API tokens."""

from __future__ import annotations

import threading

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import get_test_client

from cauldron_fabric.tests.utils import last_seq

PASSWORD = "Fabric-Test-Pass-9!"


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
	"""Creates the user, or resets it, with PASSWORD and exactly ``roles``; returns the email."""
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


class HttpCase(FrappeTestCase):
	"""A System Manager and a Blogger who log in with PASSWORD; each test runs as Administrator."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.manager = make_user("fabric-manager@example.com", ["System Manager"])
		cls.clerk = make_user("fabric-clerk@example.com", ["Blogger"])

	def setUp(self):
		frappe.set_user("Administrator")
		self.start = last_seq()
