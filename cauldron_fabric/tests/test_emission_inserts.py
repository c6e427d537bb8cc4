"""The fabric's own note of inserts under way: a copy saved by an insert's hook follows its
created event (test_emission_db_set_inside_saves), and nothing else is taken for such a copy.

Frappe's ``currently_saving`` grows with every insert of a long job; the fabric's note holds
the inserts running now and those that raised since the last insert began.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.inserts import INSERTS
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	events_after,
	last_seq,
	new_order,
	order_hooks,
	types_of,
)

UPDATED = "fabric_test_order.updated"


def refuse(doc, method=None) -> None:
	"""An after_insert hook that makes the insert fail after its row is written."""
	frappe.throw("refused by the test")


def save_a_copy(name: str, note: str) -> None:
	"""Loads the order anew, sets its note and saves that copy."""
	copy = frappe.get_doc(ORDER, name)
	copy.note = note
	copy.save()


class TestInsertsUnderWay(EmissionCase):
	def test_a_copy_saved_after_its_insert_raised_is_an_update_at_once(self):
		# The insert wrote its row, then raised and was caught (no rollback): the object is
		# left as if inside its insert. Later saves of a copy are plain updates, one each.
		with order_hooks(__name__, after_insert="refuse"):
			failed = frappe.get_doc({"doctype": ORDER, "title": "insert raised"})
			self.assertRaises(frappe.ValidationError, failed.insert)
		self.assertIs(failed.get("__islocal"), False)
		self.assertTrue(frappe.db.exists(ORDER, failed.name))
		start = last_seq()
		save_a_copy(failed.name, "first")
		save_a_copy(failed.name, "second")
		events = events_after(start, ORDER, str(failed.name))  # recorded at once, before any commit
		self.assertEqual(types_of(events), [UPDATED, UPDATED])
		self.assertEqual([event["data"]["payload"]["doc"]["note"] for event in events], ["first", "second"])
		frappe.db.commit()
		self.assertEqual(len(events_after(start, ORDER, str(failed.name))), 2)

	def test_inserts_that_ended_are_not_kept(self):
		for n in range(20):
			new_order(f"kept? {n}")
			with order_hooks(__name__, after_insert="refuse"):
				self.assertRaises(frappe.ValidationError, new_order, f"raised {n}")
		# The last insert (it raised) until the next one begins: a long job costs no more per save.
		self.assertEqual(len(getattr(frappe.local, INSERTS)), 1)
		new_order("the next one")
		self.assertEqual(len(getattr(frappe.local, INSERTS)), 1)
		frappe.db.rollback()
