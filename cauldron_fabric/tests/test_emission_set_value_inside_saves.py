"""A frappe.db.set_value made by a document's own hooks follows that save's event, with ``via:
set_value``: after created, updated or renamed. One made before the save wrote its row is
overwritten; one of a save that raised is recorded at commit; one committed by the save's own
hooks is told again after the save's event.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.set_values import watch_set_values
from cauldron_fabric.tests.test_emission_set_value_support import CREATED, UPDATED, write_after_a_refused_save
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	events_after,
	last_seq,
	new_order,
	order_hooks,
	payload,
	save_with_hooks,
	types_of,
)

# What before_request and before_job do: a test run alone has no document hook to import it.
watch_set_values()


def note_by_set_value(doc, method=None) -> None:
	"""A controller hook that writes the order's note with frappe.db.set_value, naming the hook."""
	frappe.db.set_value(doc.doctype, doc.name, "note", f"set_value in {method}")


def note_by_set_value_then_refuse(doc, method=None) -> None:
	"""A hook that writes the note with frappe.db.set_value and then makes the save fail."""
	note_by_set_value(doc, method)
	frappe.throw("refused after set_value")


def note_by_set_value_under_the_new_name(doc, method=None, old=None, new=None, merge=False) -> None:
	"""An after_rename hook that writes the note under the new name, as ERPNext's Item writes
	its item_code."""
	frappe.db.set_value(doc.doctype, new, "note", f"renamed from {old}")


def note_by_db_set_under_the_new_name(doc, method=None, old=None, new=None, merge=False) -> None:
	"""An after_rename hook that db_sets the note on the renamed document, as ERPNext's Customer
	db_sets its customer_name."""
	doc.db_set("note", f"db_set after renaming {old}")


def note_by_save_under_the_new_name(doc, method=None, old=None, new=None, merge=False) -> None:
	"""An after_rename hook that saves the renamed document with a new note."""
	doc.note = f"saved after renaming {old}"
	doc.save()


def note_by_set_value_then_commit(doc, method=None) -> None:
	"""A hook that writes the note with frappe.db.set_value and commits, as some jobs' hooks do."""
	note_by_set_value(doc, method)
	frappe.db.commit()


class TestSetValueInsideSaves(EmissionCase):
	"""Each test commits, so a write held back by mistake would show up as an extra event."""

	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_a_write_in_on_update_follows_the_saves_event(self):
		_, (saved, written) = save_with_hooks(__name__, "on_update", on_update="note_by_set_value")
		self.assertEqual(types_of([saved, written]), [UPDATED, UPDATED])
		self.assertEqual(payload(saved)["changes"], {"title": {"old": "on_update", "new": "saved"}})
		self.assertNotIn("via", payload(saved))
		self.assertEqual(payload(written)["via"], "set_value")
		self.assertEqual(
			payload(written)["changes"], {"note": {"old": None, "new": "set_value in on_update"}}
		)

	def test_a_write_in_after_insert_follows_created(self):
		start = last_seq()
		with order_hooks(__name__, after_insert="note_by_set_value"):
			order = new_order("after_insert")
		frappe.db.commit()
		created, written = events_after(start, ORDER, order.name)
		self.assertEqual(types_of([created, written]), [CREATED, UPDATED])
		self.assertEqual(
			payload(written)["changes"], {"note": {"old": None, "new": "set_value in after_insert"}}
		)
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), "set_value in after_insert")

	def test_a_write_in_after_rename_follows_the_renamed_event(self):
		# The renamed event tells consumers the new name: an update under it must not come first.
		# A db_set changes the object the renamed event is built from, and is an event of its
		# own: its update comes after the renamed event too, and still tells what it changed.
		for hook, via, note in (
			("note_by_set_value_under_the_new_name", "set_value", "renamed from {}"),
			("note_by_db_set_under_the_new_name", "db_set", "db_set after renaming {}"),
			("note_by_save_under_the_new_name", None, "saved after renaming {}"),
		):
			with self.subTest(via=via):
				order = new_order(f"rename by {via}")
				frappe.db.commit()
				start = last_seq()
				with order_hooks(__name__, after_rename=hook):
					new_name = frappe.rename_doc(ORDER, order.name, f"{order.name}-renamed")
				frappe.db.commit()
				renamed, written = events_after(start, ORDER)
				self.assertEqual(types_of([renamed, written]), ["fabric_test_order.renamed", UPDATED])
				self.assertEqual(written["data"]["entityId"], new_name)
				self.assertEqual(payload(written).get("via"), via)
				new_note = note.format(order.name)
				self.assertEqual(payload(written)["changes"], {"note": {"old": None, "new": new_note}})
				self.assertEqual(
					payload(written)["doc"]["note"], frappe.db.get_value(ORDER, new_name, "note")
				)

	def test_a_write_before_the_save_wrote_its_row_is_overwritten_and_told_by_nobody(self):
		order, (saved,) = save_with_hooks(
			__name__, "validate", new_title="validated", validate="note_by_set_value"
		)
		self.assertEqual(payload(saved)["changes"], {"title": {"old": "validate", "new": "validated"}})
		self.assertIsNone(frappe.db.get_value(ORDER, order.name, "note"))

	def test_a_write_of_a_save_that_raised_is_recorded_at_commit(self):
		order = new_order("refused")
		frappe.db.commit()
		start = last_seq()
		with order_hooks(__name__, on_update="note_by_set_value_then_refuse"):
			order.title = "never saved"
			with self.assertRaises(frappe.ValidationError):
				order.save()
		# The caller catches the error and commits what was written.
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [UPDATED])
		self.assertEqual(payload(events[0])["via"], "set_value")
		stored = frappe.get_doc(ORDER, order.name)
		self.assertEqual(payload(events[0])["doc"]["note"], stored.note)
		self.assertEqual(payload(events[0])["doc"]["title"], stored.title)

	def test_a_write_committed_by_the_saves_own_hooks_is_told_again_after_its_event(self):
		# The commit records the write (its save has no event yet); the save's event then carries
		# the saved object, which does not hold the value: an update after it tells the value as
		# stored again, so the document's last event is not older than its row.
		order, events = save_with_hooks(
			__name__, "committed in a hook", on_update="note_by_set_value_then_commit"
		)
		self.assertEqual([payload(e).get("via") for e in events], ["set_value", None, "set_value"])
		self.assertEqual(
			payload(events[1])["changes"], {"title": {"old": "committed in a hook", "new": "saved"}}
		)
		self.assertEqual(
			payload(events[2])["changes"], {"note": {"old": None, "new": "set_value in on_update"}}
		)
		stored = frappe.get_doc(ORDER, order.name)
		self.assertEqual(payload(events[-1])["doc"]["note"], stored.note)
		self.assertEqual(payload(events[-1])["doc"]["title"], stored.title)

	def test_a_write_after_a_save_that_raised_is_its_own_event(self):
		# Frappe leaves a save that raised in currently_saving: a write after it, outside any
		# save, must not wait for a save of that document, whose event would not tell it.
		written, saved = write_after_a_refused_save(
			"failed", lambda order: frappe.db.set_value(ORDER, order.name, "note", "marked as failed")
		)
		self.assertEqual(payload(written)["via"], "set_value")
		self.assertEqual(payload(written)["changes"], {"note": {"old": None, "new": "marked as failed"}})
		self.assertEqual(payload(saved)["changes"], {"title": {"old": "failed", "new": "saved again"}})
