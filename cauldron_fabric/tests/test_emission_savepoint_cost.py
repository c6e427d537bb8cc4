"""What the fabric holds for the commit, followed through savepoints at the cost of what changes.

A long job (a patch, an import, a queue flush) may hold thousands of items (rows changed alone,
deferred db_sets) and set a savepoint for each of thousands of rows: a savepoint must not copy
all that is held, nor keep a copy of it while the database keeps the savepoint.
"""

from __future__ import annotations

import tracemalloc

import frappe
from frappe.database.database import savepoint
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.emit.held import held_now, hold_until_commit

ATTRIBUTE = "fabric_test_held_items"


def nothing() -> None:
	"""A flush with nothing to record (the test's items are no events)."""


def hold(count: int) -> dict:
	held = hold_until_commit(ATTRIBUTE, nothing)
	for number in range(count):
		held["Order", str(number)] = {"kind": "document", "via": None, "before": {"items": [{"qty": 1}]}}
	return held


class TestHeldItemsThroughSavepoints(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def test_savepoints_rolled_back_in_a_long_job_keep_no_copy_of_what_is_held(self):
		hold(2000)
		tracemalloc.start()
		try:
			before = tracemalloc.get_traced_memory()[0]
			for _row in range(100):  # Frappe's savepoint block, each row failing: the savepoints stay
				with savepoint(catch=ValueError):
					raise ValueError("this row is refused")
			grown = tracemalloc.get_traced_memory()[0] - before
		finally:
			tracemalloc.stop()
		self.assertLess(grown, 2_000_000, f"100 savepoints kept {grown} bytes")
		self.assertEqual(len(held_now(ATTRIBUTE)), 2000)

	def test_a_rollback_puts_back_each_held_value_as_it_was_at_the_savepoint(self):
		held = hold(2)
		frappe.db.savepoint("fabric_outer")
		held.get(("Order", "0"))["via"] = "db_set"  # changed in place, as rows.py does
		held["Order", "new"] = {"kind": "document", "via": None, "before": {}}
		frappe.db.savepoint("fabric_inner")
		del held["Order", "1"]
		held.get(("Order", "0"))["before"]["items"] = []
		frappe.db.release_savepoint("fabric_inner")
		frappe.db.rollback(save_point="fabric_outer")
		expected = {"kind": "document", "via": None, "before": {"items": [{"qty": 1}]}}
		self.assertEqual(dict(held_now(ATTRIBUTE)), {("Order", "0"): expected, ("Order", "1"): expected})
		held_now(ATTRIBUTE).pop(("Order", "0"))
		frappe.db.rollback(save_point="fabric_outer")  # rolled back to again
		self.assertEqual(sorted(held_now(ATTRIBUTE)), [("Order", "0"), ("Order", "1")])

	def test_a_full_rollback_forgets_the_savepoints_and_what_is_held(self):
		hold(3)
		frappe.db.savepoint("fabric_outer")
		frappe.db.rollback()
		self.assertEqual(held_now(ATTRIBUTE), {})
		held = hold(1)
		frappe.db.savepoint("fabric_outer")
		del held["Order", "0"]
		frappe.db.rollback(save_point="fabric_outer")
		self.assertEqual(list(held_now(ATTRIBUTE)), [("Order", "0")])
