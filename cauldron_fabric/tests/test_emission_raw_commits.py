"""COMMIT and ROLLBACK run in raw SQL (``frappe.db.sql("commit")``, older apps' habit) end the
transaction as ``frappe.db.commit()`` and ``rollback()`` do.

What the fabric holds for the commit (rows changed alone, db_sets deferred past their save,
wake-ups) waits in Frappe's before_commit callbacks, which a raw COMMIT never ran: the changes
were committed, their events were not, and a rollback afterwards dropped them for good.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.test_emission_sql import UPDATED
from cauldron_fabric.tests.utils import ORDER, EmissionCase, events_after, last_seq, new_order, payload

watch_sql()


def quantities(event: dict) -> tuple[list, list]:
	"""Returns the item quantities before and after in an update's table change."""
	change = payload(event)["changes"]["items"]
	return [row["qty"] for row in change["old"]], [row["qty"] for row in change["new"]]


class TestRawTransactionEnds(EmissionCase):
	def test_rows_changed_alone_then_committed_raw_are_recorded_with_that_commit(self):
		for statement in ("COMMIT", "commit work;"):
			with self.subTest(statement):
				order = new_order("raw commit")
				frappe.db.commit()
				start = last_seq()
				order.items[0].db_set("qty", 5)  # a row alone: its parent's update waits for the commit
				frappe.db.sql(statement)
				frappe.db.rollback()  # the request then ends in an error: nothing is left to undo
				(event,) = events_after(start, ORDER)
				self.assertEqual(event["type"], UPDATED)
				self.assertEqual(quantities(event), ([1, 3], [5, 3]))

	def test_rows_changed_alone_then_rolled_back_raw_are_not_recorded(self):
		order = new_order("raw rollback")
		frappe.db.commit()
		start = last_seq()
		order.items[0].db_set("qty", 6)
		frappe.db.sql("ROLLBACK")
		order.items[1].db_set("qty", 9)
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(quantities(event), ([1, 3], [1, 9]))
