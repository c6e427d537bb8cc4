"""A user's roles are permissions: giving or taking one is a ``system.change``, whatever the path."""

from __future__ import annotations

import copy

import frappe

from cauldron_fabric.core.naming import SYSTEM_CHANGE
from cauldron_fabric.core.schema import load_catalog
from cauldron_fabric.registry import subjects, versions
from cauldron_fabric.tests.utils import EmissionCase, events_after, fabric_settings, last_seq, types_of

# Users this module made: deleted after each test, because Frappe refuses new users past 60 an
# hour ("Throttled"), counting those that still exist, and some of these tests commit.
made_users: list[str] = []


def new_user(*roles: str, **values) -> str:
	"""Inserts a user with ``roles``; returns its name."""
	email = f"fabric-roles-{frappe.generate_hash(length=8)}@example.com"
	made_users.append(email)
	frappe.get_doc(
		{
			"doctype": "User",
			"email": email,
			"first_name": "Roles",
			"send_welcome_email": 0,
			"roles": [{"role": role} for role in roles],
			**values,
		}
	).insert(ignore_permissions=True)
	return email


def ensure_another_system_manager() -> None:
	"""Makes a System Manager besides Administrator: without one, Frappe gives every new user that role."""
	manager = "fabric-roles-manager@example.com"
	if not frappe.db.exists("User", manager):
		frappe.get_doc(
			{
				"doctype": "User",
				"email": manager,
				"first_name": "Manager",
				"send_welcome_email": 0,
				"roles": [{"role": "System Manager"}],
			}
		).insert(ignore_permissions=True)
		frappe.db.commit()


def delete_made_users() -> None:
	"""Deletes the users ``new_user`` made (committed)."""
	frappe.db.rollback()
	while made_users:
		user = made_users.pop()
		if frappe.db.exists("User", user):
			frappe.delete_doc("User", user, ignore_permissions=True)
	frappe.db.commit()


def role_changes(seq: int, user: str) -> list[dict]:
	"""Returns the system.change events about ``user``'s roles recorded after ``seq``."""
	return [e for e in events_after(seq, "User", user) if e["type"] == "system.change"]


def set_roles(user: str, *roles: str) -> None:
	"""Saves the user with exactly ``roles``, as the User form does."""
	doc = frappe.get_doc("User", user)
	doc.set("roles", [{"role": role} for role in roles])
	doc.save(ignore_permissions=True)


def statuses(seq: int) -> set[str]:
	return {row[0] for row in frappe.db.sql("SELECT status FROM `tabEvent Log` WHERE name > %s", seq)}


class UserRolesCase(EmissionCase):
	"""Tests that make users (new_user) and change their roles; the users go after each test."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_another_system_manager()

	def tearDown(self):
		delete_made_users()


class TestRoleAssignmentEvents(UserRolesCase):
	def test_roles_given_and_taken_in_a_user_save_are_one_system_change(self):
		user = new_user("Blogger", "Translator")
		start = last_seq()
		set_roles(user, "Blogger", "Report Manager")
		(change,) = role_changes(start, user)
		payload = change["data"]["payload"]
		self.assertEqual((payload["doctype"], payload["name"], payload["action"]), ("User", user, "updated"))
		self.assertEqual(
			(payload["rolesAdded"], payload["rolesRemoved"]), (["Report Manager"], ["Translator"])
		)
		self.assertEqual(
			payload["changes"],
			{"roles": {"old": ["Blogger", "Translator"], "new": ["Blogger", "Report Manager"]}},
		)
		self.assertNotIn("Invalid", statuses(start), "the event passes the catalog schema")
		self.assertIn("user.updated", types_of(events_after(start, "User", user)))

	def test_a_user_created_with_roles_is_a_system_change(self):
		user = new_user("Blogger")
		(change,) = role_changes(self.start, user)
		payload = change["data"]["payload"]
		self.assertEqual(
			(payload["action"], payload["rolesAdded"], payload["rolesRemoved"]), ("created", ["Blogger"], [])
		)

	def test_a_user_save_that_changes_no_roles_emits_no_system_change(self):
		user = new_user("Blogger", "Translator")
		start = last_seq()
		doc = frappe.get_doc("User", user)
		doc.first_name = "Renamed"
		doc.save(ignore_permissions=True)
		set_roles(user, "Translator", "Blogger")  # the same roles in new rows
		self.assertEqual(role_changes(start, user), [])
		self.assertIn("user.updated", types_of(events_after(start, "User", user)))

	def test_the_role_change_is_recorded_in_the_transaction_of_the_save(self):
		user = new_user("Blogger")
		frappe.db.commit()
		start = last_seq()
		set_roles(user)
		self.assertEqual(len(role_changes(start, user)), 1)
		frappe.db.rollback()
		self.assertEqual(role_changes(start, user), [])

	def test_a_role_profile_change_reaches_its_users_as_system_changes(self):
		profile = frappe.get_doc(
			{
				"doctype": "Role Profile",
				"role_profile": f"Fabric Profile {frappe.generate_hash(length=6)}",
				"roles": [{"role": "Blogger"}],
			}
		).insert(ignore_permissions=True)
		user = new_user(role_profile_name=profile.name)
		start = last_seq()
		profile.append("roles", {"role": "Translator"})
		profile.save(ignore_permissions=True)
		(change,) = role_changes(start, user)
		payload = change["data"]["payload"]
		self.assertEqual((payload["rolesAdded"], payload["rolesRemoved"]), (["Translator"], []))
		entities = {e["data"]["entity"] for e in events_after(start) if e["type"] == "system.change"}
		self.assertIn("Role Profile", entities)

	def test_disabling_a_role_takes_it_from_its_users_as_system_changes(self):
		# Frappe deletes every Has Role row of a disabled role with a plain query, no User save.
		role = frappe.get_doc(
			{"doctype": "Role", "role_name": f"Fabric Probe {frappe.generate_hash(length=6)}"}
		).insert(ignore_permissions=True)
		holder, other = new_user("Blogger", role.name), new_user("Blogger")
		start = last_seq()
		role.disabled = 1
		role.save(ignore_permissions=True)
		self.assertEqual(frappe.get_all("Has Role", {"role": role.name}), [])
		(change,) = role_changes(start, holder)
		payload = change["data"]["payload"]
		self.assertEqual((payload["rolesAdded"], payload["rolesRemoved"]), ([], [role.name]))
		self.assertEqual(
			payload["changes"], {"roles": {"old": sorted(["Blogger", role.name]), "new": ["Blogger"]}}
		)
		self.assertEqual(role_changes(start, other), [])
		self.assertNotIn("Invalid", statuses(start))

	def test_disabling_a_role_takes_it_from_its_role_profiles_as_system_changes(self):
		# The same plain delete takes the role from every Role Profile, without saving them.
		role = frappe.get_doc(
			{"doctype": "Role", "role_name": f"Fabric Probe {frappe.generate_hash(length=6)}"}
		).insert(ignore_permissions=True)
		profile, other = (
			frappe.get_doc(
				{
					"doctype": "Role Profile",
					"role_profile": f"Fabric Profile {frappe.generate_hash(length=6)}",
					"roles": [{"role": r} for r in roles],
				}
			).insert(ignore_permissions=True)
			for roles in (("Blogger", role.name), ("Blogger",))
		)
		start = last_seq()
		role.disabled = 1
		role.save(ignore_permissions=True)
		self.assertEqual(frappe.get_all("Has Role", {"parent": profile.name, "role": role.name}), [])
		(change,) = [
			e for e in events_after(start, "Role Profile", profile.name) if e["type"] == "system.change"
		]
		payload = change["data"]["payload"]
		self.assertEqual((payload["doctype"], payload["name"]), ("Role Profile", profile.name))
		self.assertEqual((payload["rolesAdded"], payload["rolesRemoved"]), ([], [role.name]))
		self.assertEqual(
			payload["changes"], {"roles": {"old": sorted(["Blogger", role.name]), "new": ["Blogger"]}}
		)
		self.assertEqual(events_after(start, "Role Profile", other.name), [])
		self.assertNotIn("Invalid", statuses(start))

	def test_a_role_change_saves_while_the_registry_has_a_system_change_schema_without_roles(self):
		# Until the migrate registers this version's catalog, and for good where the subject's
		# compatibility mode refuses it, the latest system.change schema allows no rolesAdded: a
		# user's save must not be refused for an event the fabric adds to it.
		schema = copy.deepcopy(next(e.schema for e in load_catalog() if e.type == SYSTEM_CHANGE))
		for field in ("rolesAdded", "rolesRemoved"):
			del schema["properties"][field]
		schema["title"] = "System change, as before roles were recorded"
		user = new_user("Blogger")
		with fabric_settings(invalid_event_policy="Reject"):
			try:
				subjects.set_subject_mode(SYSTEM_CHANGE, "NONE")
				versions.register_schema(SYSTEM_CHANGE, schema)
				start = last_seq()
				set_roles(user, "Blogger", "Translator")
				(change,) = role_changes(start, user)
				self.assertEqual(change["data"]["payload"]["rolesAdded"], ["Translator"])
				stored = frappe.db.get_value(
					"Event Log", {"event_id": change["id"]}, ["status", "last_error"]
				)
				self.assertEqual(stored[0], "Invalid", "kept, and shown as not matching its schema")
				self.assertIn("rolesAdded", stored[1])
			finally:
				frappe.db.rollback()
