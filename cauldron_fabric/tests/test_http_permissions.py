"""Over real HTTP: Desk's permission pages, which write without document hooks, are system changes."""

from __future__ import annotations

import json

import frappe
from frappe.utils import get_test_client

from cauldron_fabric.tests.test_http_support import PASSWORD, HttpCase, request
from cauldron_fabric.tests.utils import ensure_custom_doctype, events_after, last_seq

PERMS_PROBE = "Fabric Perms Probe"


class TestPermissionPagesOverHttp(HttpCase):
	"""The Role Permissions Manager and the User Permission list, as an admin uses them."""

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
