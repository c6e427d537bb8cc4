"""A db_set from a document's own save hooks is part of that save's one event, in order; one on
another copy of the document follows it.

Outside a save a db_set stays an ``updated`` event of its own; one whose save raised is
recorded at commit, and forgotten on rollback.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.tests.test_emission_db_set_support import CREATED, HOOKS, UPDATED, note_of
from cauldron_fabric.tests.test_http_support import make_user
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
	order_hooks,
	types_of,
)

SUBMITTED = "fabric_test_order.submitted"
BUSINESS = "business.transaction"


class TestDbSetInsideSaves(EmissionCase):
	"""Each test commits, so a db_set held back by mistake would show up as an extra event."""

	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_db_set_in_validate_or_after_insert_is_part_of_created(self):
		for hook in ("validate", "after_insert"):
			with self.subTest(hook=hook):
				start = last_seq()
				with order_hooks(HOOKS, **{hook: "note_from_hook"}):
					order = new_order(hook)
				frappe.db.commit()
				events = events_after(start, ORDER)
				self.assertEqual(types_of(events), [CREATED])
				self.assertEqual(note_of(events[0]), f"set in {hook}")
				self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), f"set in {hook}")

	def test_a_save_in_after_insert_is_part_of_created(self):
		with order_hooks(HOOKS, after_insert="note_and_save"):
			order = new_order("saved in its after_insert")
		frappe.db.commit()
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), [CREATED])
		self.assertEqual(note_of(events[0]), "saved in after_insert")
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), "saved in after_insert")

	def test_a_copy_changed_in_after_insert_follows_created(self):
		for hook, note, via in (
			("note_and_save_a_copy", "saved on a copy in after_insert", None),
			("note_from_another_copy", "set on a copy", "db_set"),
		):
			with self.subTest(hook=hook):
				start = last_seq()
				with order_hooks(HOOKS, after_insert=hook):
					order = new_order(hook)
				frappe.db.commit()
				events = events_after(start, ORDER)
				self.assertEqual(types_of(events), [CREATED, UPDATED])
				self.assertEqual(
					events[1]["data"]["payload"]["changes"], {"note": {"old": None, "new": note}}
				)
				self.assertEqual(note_of(events[1]), frappe.db.get_value(ORDER, order.name, "note"))
				self.assertEqual(events[1]["data"]["payload"].get("via"), via)

	def test_a_copy_saved_in_the_after_insert_of_an_insert_given_its_name_follows_created(self):
		# Frappe notes such an insert in currently_saving under the name it was given, not None:
		# a data import with IDs keeps that name, an API insert of a hash-named DocType replaces it.
		for in_import in (True, False):
			with self.subTest(in_import=in_import):
				start = last_seq()
				given = f"fabric-named-{frappe.generate_hash(length=8)}"
				frappe.flags.in_import = in_import
				try:
					with order_hooks(HOOKS, after_insert="note_and_save_a_copy"):
						order = new_order("named up front", name=given)
				finally:
					frappe.flags.in_import = False
				frappe.db.commit()
				self.assertEqual(order.name == given, in_import)
				events = events_after(start, ORDER)
				self.assertEqual(types_of(events), [CREATED, UPDATED])
				self.assertIsNone(note_of(events[0]))
				self.assertEqual(note_of(events[1]), "saved on a copy in after_insert")

	def test_a_submit_in_after_insert_is_one_submit_with_or_without_lifecycle_events(self):
		for lifecycle, expected in ((1, [CREATED, SUBMITTED, BUSINESS]), (0, [BUSINESS])):
			with self.subTest(lifecycle=lifecycle):
				start = last_seq()
				with fabric_settings(emit_document_events=lifecycle):
					with order_hooks(HOOKS, after_insert="submit_in_hook"):
						new_order("submitted in its after_insert")
					frappe.db.commit()
				self.assertEqual(types_of(events_after(start, ORDER)), expected)

	def test_db_set_in_on_update_is_part_of_the_one_update(self):
		order = new_order("on update")
		with order_hooks(HOOKS, on_update="note_from_hook"):
			order.title = "on update v2"
			order.save()
		frappe.db.commit()
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), [CREATED, UPDATED])
		self.assertEqual(
			events[1]["data"]["payload"]["changes"],
			{
				"title": {"old": "on update", "new": "on update v2"},
				"note": {"old": None, "new": "set in on_update"},
			},
		)
		self.assertNotIn("via", events[1]["data"]["payload"])

	def test_db_set_on_another_copy_during_a_save_follows_the_save(self):
		# The save's event does not carry what another object wrote, so the db_set comes after it.
		order = new_order("copy")
		with order_hooks(HOOKS, on_update="note_from_another_copy"):
			order.title = "copy v2"
			order.save()
		frappe.db.commit()
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), [CREATED, UPDATED, UPDATED])
		self.assertEqual(
			events[1]["data"]["payload"]["changes"], {"title": {"old": "copy", "new": "copy v2"}}
		)
		self.assertEqual(events[2]["data"]["payload"]["via"], "db_set")
		self.assertEqual(note_of(events[2]), "set on a copy")

	def test_db_set_in_on_submit_is_part_of_submitted(self):
		order = new_order("on submit")
		with order_hooks(HOOKS, on_submit="note_from_hook"):
			order.submit()
		frappe.db.commit()
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), [CREATED, "fabric_test_order.submitted", "business.transaction"])
		self.assertEqual(note_of(events[1]), "set in on_submit")
		self.assertEqual(events[1]["data"]["payload"]["doc"]["docstatus"], 1)

	def test_a_user_with_a_welcome_email_is_created_once(self):
		# Frappe's User db_sets the reset password key while it is being inserted.
		# Frappe deletes a user only while a System Manager other than Administrator remains
		# (on a new site there is none until a test makes one).
		make_user("fabric-system-manager@example.com", ["System Manager"])
		email = f"fabric-welcome-{frappe.generate_hash(length=8)}@example.com"
		user = frappe.get_doc(
			{"doctype": "User", "email": email, "first_name": "Welcome", "send_welcome_email": 1}
		).insert()
		frappe.db.commit()
		# Frappe refuses new users past 60 an hour, counting those that still exist.
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "User", email, ignore_permissions=True)
		self.assertTrue(frappe.db.get_value("User", email, "reset_password_key"))
		events = events_after(self.start, "User", user.name)
		self.assertEqual(types_of(events), ["user.created"])
		self.assertTrue(events[0]["data"]["payload"]["doc"]["last_reset_password_key_generated_on"])

	def test_db_set_before_the_document_has_a_name_does_not_change_its_insert(self):
		order = frappe.get_doc({"doctype": ORDER, "title": "unnamed"})
		order.db_set("note", "before insert")  # Frappe writes nothing: there is no name yet
		order.insert()
		frappe.db.commit()
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), [CREATED])
		self.assertEqual(note_of(events[0]), "before insert")

	def test_db_set_after_a_failed_save_is_recorded_at_commit(self):
		order = new_order("fails")
		frappe.db.commit()
		start = last_seq()
		self.assertRaises(frappe.ValidationError, self.failed_save, order)
		order.db_set("note", "Failed")
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [UPDATED])
		self.assertEqual(events[0]["data"]["payload"]["via"], "db_set")
		self.assertEqual(note_of(events[0]), "Failed")
		# Nothing is left to record at the next commit.
		frappe.db.commit()
		self.assertEqual(len(events_after(start, ORDER)), 1)

	def test_db_set_after_a_failed_save_is_not_lost_in_the_next_save(self):
		# The db_set comes from no save: held for one, the next save's event (which starts from
		# the row as written) would never tell it.
		order = new_order("fails, then saved")
		frappe.db.commit()
		start = last_seq()
		self.assertRaises(frappe.ValidationError, self.failed_save, order)
		order.reload()
		order.db_set("note", "Failed")
		order.title = "saved at last"
		order.save()
		frappe.db.commit()
		db_set, saved = events_after(start, ORDER)
		self.assertEqual(db_set["data"]["payload"]["changes"], {"note": {"old": None, "new": "Failed"}})
		self.assertEqual(
			saved["data"]["payload"]["changes"],
			{"title": {"old": "fails, then saved", "new": "saved at last"}},
		)

	def test_a_rolled_back_db_set_is_forgotten(self):
		order = new_order("rolled back")
		frappe.db.commit()
		start = last_seq()
		self.assertRaises(frappe.ValidationError, self.failed_save, order)
		order.db_set("note", "Failed")
		frappe.db.rollback()
		frappe.db.commit()
		self.assertEqual(events_after(start), [])
		self.assertIsNone(frappe.db.get_value(ORDER, order.name, "note"))
		# The next transaction records its own db_set, and only that one.
		order.db_set("note", "Failed again")
		frappe.db.commit()
		events = events_after(start)
		self.assertEqual(types_of(events), [UPDATED])
		self.assertEqual(note_of(events[0]), "Failed again")

	def test_a_db_set_rolled_back_to_a_savepoint_is_no_event(self):
		order = new_order("savepoint")
		frappe.db.commit()
		start = last_seq()
		frappe.db.savepoint("fabric_test")
		self.assertRaises(frappe.ValidationError, self.failed_save, order)
		order.db_set("note", "Failed")
		frappe.db.rollback(save_point="fabric_test")
		frappe.db.commit()
		self.assertIsNone(frappe.db.get_value(ORDER, order.name, "note"))
		self.assertEqual(events_after(start, ORDER), [], "an update that was undone")

	def test_db_set_outside_a_save_is_its_own_update(self):
		order = new_order("plain")
		order.db_set("note", "set directly")
		events = events_after(self.start, ORDER)  # recorded at once, before any commit
		self.assertEqual(types_of(events), [CREATED, UPDATED])
		self.assertEqual(events[1]["data"]["payload"]["via"], "db_set")
		self.assertEqual(
			events[1]["data"]["payload"]["changes"], {"note": {"old": None, "new": "set directly"}}
		)

	def failed_save(self, order) -> None:
		"""Saves ``order`` with a validate hook that raises; Frappe then keeps it in currently_saving."""
		self.addCleanup(self.forget_saving, order)
		with order_hooks(HOOKS, validate="refuse"):
			order.title = "never saved"
			order.save()

	@staticmethod
	def forget_saving(order) -> None:
		key = (order.doctype, order.name)
		if key in frappe.flags.currently_saving:
			frappe.flags.currently_saving.remove(key)
