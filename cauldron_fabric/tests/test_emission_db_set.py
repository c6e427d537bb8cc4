"""A db_set from a document's own save hooks is part of that save's one event, in order.

Outside a save a db_set stays an ``updated`` event of its own; one whose save raised is
recorded at commit, and forgotten on rollback.
"""

from __future__ import annotations

from contextlib import contextmanager

import frappe
from frappe.tests.utils import patch_hooks

from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	events_after,
	last_seq,
	new_order,
	types_of,
)

CREATED = "fabric_test_order.created"
UPDATED = "fabric_test_order.updated"


def note_from_hook(doc, method=None) -> None:
	"""A controller hook that db_sets the order's note, naming the hook that did it."""
	doc.db_set("note", f"set in {method}")


def note_from_another_copy(doc, method=None) -> None:
	"""A controller hook that db_sets the note through a freshly loaded copy of the order."""
	frappe.get_doc(doc.doctype, doc.name).db_set("note", "set on a copy")


def refuse(doc, method=None) -> None:
	"""A validate hook that makes the save fail."""
	frappe.throw("refused by the test")


@contextmanager
def order_hooks(**handlers: str):
	"""Adds ``doc_events`` of the test DocType (event → function of this module) to the app's."""
	doc_events = dict(frappe.get_hooks("doc_events"))
	doc_events[ORDER] = {event: [f"{__name__}.{handler}"] for event, handler in handlers.items()}
	with patch_hooks({"doc_events": doc_events}):
		_forget_doc_events()
		try:
			yield
		finally:
			_forget_doc_events()


def _forget_doc_events() -> None:
	# Frappe expands doc_events once per request and keeps them in frappe.local.
	if hasattr(frappe.local, "doc_events_hooks"):
		del frappe.local.doc_events_hooks


def note_of(envelope: dict) -> str | None:
	"""Returns the note of the order an event carries."""
	return envelope["data"]["payload"]["doc"]["note"]


class TestDbSetInsideSaves(EmissionCase):
	"""Each test commits, so a db_set held back by mistake would show up as an extra event."""

	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_db_set_in_validate_or_after_insert_is_part_of_created(self):
		for hook in ("validate", "after_insert"):
			with self.subTest(hook=hook):
				start = last_seq()
				with order_hooks(**{hook: "note_from_hook"}):
					order = new_order(hook)
				frappe.db.commit()
				events = events_after(start, ORDER)
				self.assertEqual(types_of(events), [CREATED])
				self.assertEqual(note_of(events[0]), f"set in {hook}")
				self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), f"set in {hook}")

	def test_db_set_in_on_update_is_part_of_the_one_update(self):
		order = new_order("on update")
		with order_hooks(on_update="note_from_hook"):
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
		with order_hooks(on_update="note_from_another_copy"):
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
		with order_hooks(on_submit="note_from_hook"):
			order.submit()
		frappe.db.commit()
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), [CREATED, "fabric_test_order.submitted", "business.transaction"])
		self.assertEqual(note_of(events[1]), "set in on_submit")
		self.assertEqual(events[1]["data"]["payload"]["doc"]["docstatus"], 1)

	def test_a_user_with_a_welcome_email_is_created_once(self):
		# Frappe's User db_sets the reset password key while it is being inserted.
		email = f"fabric-welcome-{frappe.generate_hash(length=8)}@example.com"
		user = frappe.get_doc(
			{"doctype": "User", "email": email, "first_name": "Welcome", "send_welcome_email": 1}
		).insert()
		frappe.db.commit()
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
		with order_hooks(validate="refuse"):
			order.title = "never saved"
			order.save()

	@staticmethod
	def forget_saving(order) -> None:
		key = (order.doctype, order.name)
		if key in frappe.flags.currently_saving:
			frappe.flags.currently_saving.remove(key)
