"""A document's or row's db_update() outside Frappe's save is an ``updated`` event with ``via:
db_update``, as a set_value is (emit/set_values.py wraps both). Saves, which write through
db_update, stay one event; Fabric Settings' *None* turns db_update off too.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.policy import SET_VALUES_NONE
from cauldron_fabric.emit.set_values import watch_set_values
from cauldron_fabric.tests.test_emission_set_value_support import UPDATED
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
	order_hooks,
	payload,
	save_with_hooks,
)

# What before_request and before_job do: a test run alone has no document hook to import it.
watch_set_values()


def note_by_db_update(doc, method=None) -> None:
	"""A controller hook that sets the note on the saved object and writes it with db_update."""
	doc.note = f"db_update in {method}"
	doc.db_update()


def note_by_db_update_of_a_copy(doc, method=None) -> None:
	"""A controller hook that writes the note with db_update through a freshly loaded copy."""
	copy = frappe.get_doc(doc.doctype, doc.name)
	copy.note = f"db_update of a copy in {method}"
	copy.db_update()


class TestDbUpdate(EmissionCase):
	"""A document's or row's db_update() outside Frappe's save is an update via db_update."""

	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_a_documents_db_update_is_its_update(self):
		order = new_order("db_update")
		frappe.db.commit()
		start = last_seq()
		loaded = frappe.get_doc(ORDER, order.name)
		loaded.note = "written by db_update"
		loaded.db_update()
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["via"], "db_update")
		self.assertEqual(payload(event)["changes"], {"note": {"old": None, "new": "written by db_update"}})
		frappe.db.commit()
		self.assertEqual(len(events_after(start, ORDER)), 1)

	def test_db_update_all_is_the_documents_update_then_its_rows(self):
		order = new_order("db_update_all")
		frappe.db.commit()
		start = last_seq()
		order.note = "all at once"
		order.items[1].qty = 30
		order.db_update_all()
		frappe.db.commit()
		document, rows = events_after(start, ORDER)
		self.assertEqual([payload(document)["via"], payload(rows)["via"]], ["db_update", "db_update"])
		self.assertEqual(list(payload(document)["changes"]), ["note"])
		change = payload(rows)["changes"]["items"]
		self.assertEqual([[r["qty"] for r in change[side]] for side in ("old", "new")], [[1, 3], [1, 30]])

	def test_saves_write_through_db_update_and_stay_one_event(self):
		order = new_order("saved")
		frappe.db.commit()
		start = last_seq()
		order.title = "saved again"
		order.items[0].qty = 2
		order.save()
		with order_hooks(__name__, on_update="note_by_db_update"):
			order.title = "saved with a hook"
			order.save()
		frappe.db.commit()
		first, second = events_after(start, ORDER)
		self.assertEqual(sorted(payload(first)["changes"]), ["items", "title"])
		self.assertNotIn("via", payload(second))
		self.assertEqual(payload(second)["doc"]["note"], "db_update in on_update")

	def test_a_copy_written_with_db_update_in_a_hook_follows_the_saves_event(self):
		_, (saved, written) = save_with_hooks(__name__, "copy", on_update="note_by_db_update_of_a_copy")
		self.assertEqual(payload(saved)["changes"], {"title": {"old": "copy", "new": "saved"}})
		self.assertEqual(payload(written)["via"], "db_update")
		self.assertEqual(
			payload(written)["changes"], {"note": {"old": None, "new": "db_update of a copy in on_update"}}
		)

	def test_none_turns_db_update_off_too(self):
		order = new_order("off")
		with fabric_settings(capture_set_value=SET_VALUES_NONE):
			start = last_seq()
			order.note = "unseen"
			order.db_update()
			frappe.db.commit()
			self.assertEqual(events_after(start, ORDER), [])
