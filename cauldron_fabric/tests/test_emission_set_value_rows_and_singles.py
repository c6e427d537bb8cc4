"""A frappe.db.set_value to a child row is its parent's update at commit, also after the
parent's save raised; a Single written with set_single_value (or Frappe's older spellings) is
a ``system.change``.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.set_values import watch_set_values
from cauldron_fabric.tests.test_emission_set_value_support import UPDATED, write_after_a_refused_save
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	ensure_custom_doctype,
	events_after,
	last_seq,
	new_order,
	payload,
)

SINGLE = "Fabric Set Value Single"


# What before_request and before_job do: a test run alone has no document hook to import it.
watch_set_values()


class TestSetValueOnRowsAndSingles(EmissionCase):
	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_a_write_to_a_row_is_its_parents_update_at_commit(self):
		order = new_order("rows")
		frappe.db.commit()
		start = last_seq()
		first, second = order.items
		frappe.db.set_value(ORDER_ITEM, second.name, "qty", 8)
		frappe.db.set_value(ORDER_ITEM, {"parent": order.name, "item": "cauldron"}, "qty", 2)
		self.assertEqual(events_after(start, ORDER), [])  # held for the commit
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["via"], "set_value")
		change = payload(event)["changes"]["items"]
		self.assertEqual([row["qty"] for row in change["old"]], [1, 3])
		self.assertEqual([row["qty"] for row in change["new"]], [2, 8])
		self.assertEqual({row["name"] for row in change["new"]}, {first.name, second.name})

	def test_a_row_written_after_its_parents_save_raised_is_its_parents_update(self):
		# As for the document itself: the row's write comes from no save, and the parent's next
		# save starts from the row as written.
		written, saved = write_after_a_refused_save(
			"failed, rows", lambda order: frappe.db.set_value(ORDER_ITEM, order.items[1].name, "qty", 42)
		)
		self.assertEqual(payload(written)["via"], "set_value")
		change = payload(written)["changes"]["items"]
		self.assertEqual([[row["qty"] for row in change[side]] for side in ("old", "new")], [[1, 3], [1, 42]])
		self.assertEqual(list(payload(saved)["changes"]), ["title"])

	def test_a_single_written_with_set_single_value_is_a_system_change(self):
		ensure_custom_doctype(
			SINGLE, [{"fieldname": "limit", "fieldtype": "Int", "label": "Limit"}], issingle=1
		)
		frappe.db.set_single_value(SINGLE, "limit", 1)
		frappe.db.commit()
		for write in (
			lambda: frappe.db.set_single_value(SINGLE, "limit", 5),
			lambda: frappe.db.set_value(SINGLE, SINGLE, "limit", 6),  # Frappe's older spellings
			lambda: frappe.db.set_value(SINGLE, None, "limit", 8),
			lambda: frappe.db.set_value(SINGLE, None, {"limit": 6}),
			lambda: frappe.get_single(SINGLE).db_set("limit", 7),
		):
			start = last_seq()
			write()
			(event,) = events_after(start, SINGLE)
			self.assertEqual(event["type"], "system.change")
		start = last_seq()
		frappe.db.set_single_value(SINGLE, "limit", 9)
		(event,) = events_after(start, SINGLE)
		self.assertEqual(payload(event)["via"], "set_value")
		self.assertEqual(payload(event)["changes"], {"limit": {"old": 7, "new": 9}})
		frappe.db.commit()
