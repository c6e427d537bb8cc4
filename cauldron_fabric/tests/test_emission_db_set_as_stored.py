"""Events of db_set carry what is stored: a db_set on an object older than its row, decimals as
the database rounds them, and a commit inside a save's own hooks recording that save once.
"""

from __future__ import annotations

import frappe

from cauldron_fabric.tests.test_emission_db_set_support import CREATED, HOOKS, doc_of
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	ensure_custom_doctype,
	events_after,
	last_seq,
	new_order,
	order_hooks,
	save_with_hooks,
	types_of,
)

DECIMAL_PROBE = "Fabric Decimal Probe"


class TestDbSetCarriesTheRowAsStored(EmissionCase):
	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_db_set_on_an_object_older_than_the_row(self):
		order = new_order("stale")
		stale = frappe.get_doc(ORDER, order.name)
		fresh = frappe.get_doc(ORDER, order.name)
		fresh.title = "renamed elsewhere"
		fresh.save()
		stale.db_set("note", "on a stale object")
		_created, _saved, db_set = events_after(self.start, ORDER)
		self.assertEqual(doc_of(db_set)["title"], "renamed elsewhere")
		self.assertEqual(doc_of(db_set)["note"], "on a stale object")
		self.assertEqual(
			db_set["data"]["payload"]["changes"], {"note": {"old": None, "new": "on a stale object"}}
		)

	def test_db_set_after_reload_changes_only_what_it_wrote(self):
		order = new_order("reloaded")
		order.title = "reloaded v2"
		order.save()
		other = frappe.get_doc(ORDER, order.name)
		other.title = "reloaded v3"
		other.save()
		order.reload()
		order.db_set("note", "after reload")
		db_set = events_after(self.start, ORDER)[-1]
		self.assertEqual(db_set["data"]["payload"]["via"], "db_set")
		self.assertEqual(db_set["data"]["payload"]["changes"], {"note": {"old": None, "new": "after reload"}})

	def test_db_set_after_a_failed_save_carries_only_what_was_written(self):
		order = new_order("failed save")
		frappe.db.commit()
		start = last_seq()
		self.addCleanup(self._forget_saving, order)
		with order_hooks(HOOKS, validate="refuse"), self.assertRaises(frappe.ValidationError):
			order.title = "never saved"
			order.save()
		order.db_set("note", "after the failure")
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(doc_of(event)["title"], "failed save")
		self.assertEqual(
			event["data"]["payload"]["changes"], {"note": {"old": None, "new": "after the failure"}}
		)

	@staticmethod
	def _forget_saving(order) -> None:
		key = (order.doctype, order.name)
		if key in frappe.flags.currently_saving:
			frappe.flags.currently_saving.remove(key)


class TestDecimalsAsStored(EmissionCase):
	def test_decimals_travel_as_stored_and_an_unchanged_save_is_no_event(self):
		ensure_custom_doctype(
			DECIMAL_PROBE,
			[
				{"fieldname": "f", "fieldtype": "Float", "label": "F"},
				{"fieldname": "c", "fieldtype": "Currency", "label": "C"},
				{"fieldname": "p", "fieldtype": "Percent", "label": "P"},
			],
			autoname="hash",
		)
		probe = frappe.get_doc({"doctype": DECIMAL_PROBE, "f": 0.1 + 0.2, "c": 10 / 3, "p": 100 / 3}).insert()
		probe.save()  # nothing changed
		stored = frappe.db.get_value(DECIMAL_PROBE, probe.name, ["f", "c", "p"], as_dict=True)
		events = events_after(self.start, DECIMAL_PROBE)
		self.assertEqual(types_of(events), ["fabric_decimal_probe.created"])
		self.assertEqual({k: doc_of(events[0])[k] for k in stored}, {k: float(v) for k, v in stored.items()})


class TestCommitInsideASave(EmissionCase):
	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_a_commit_in_on_update_records_the_save_once(self):
		order = new_order("commit in on_update")
		frappe.db.commit()
		start = last_seq()
		with order_hooks(HOOKS, on_update="note_then_commit"):
			order.title = "commit in on_update v2"
			order.save()
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(
			event["data"]["payload"]["changes"],
			{
				"title": {"old": "commit in on_update", "new": "commit in on_update v2"},
				"note": {"old": None, "new": "set in on_update"},
			},
		)

	def test_a_commit_in_after_insert_records_created_first_and_once(self):
		with order_hooks(HOOKS, after_insert="note_then_commit"):
			order = new_order("commit in after_insert")
		frappe.db.commit()
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), [CREATED])
		self.assertEqual(doc_of(events[0])["note"], "set in after_insert")
		self.assertEqual(events[0]["data"]["entityId"], order.name)

	def test_a_db_set_on_another_copy_committed_in_on_update_is_told_again_after_the_save(self):
		# The commit records the copy's db_set (the save has no event yet); the save's event then
		# carries the saved object, which does not hold the note: an update after it tells the
		# row as stored again, so the document's last event is not older than its row.
		order, events = save_with_hooks(
			HOOKS,
			"copy committed in on_update",
			new_title="copy committed v2",
			on_update="note_on_another_copy_then_commit",
		)
		self.assertEqual([e["data"]["payload"].get("via") for e in events], ["db_set", None, "db_set"])
		self.assertEqual(
			events[1]["data"]["payload"]["changes"],
			{"title": {"old": "copy committed in on_update", "new": "copy committed v2"}},
		)
		stored = frappe.get_doc(ORDER, order.name)
		self.assertEqual(doc_of(events[-1])["note"], stored.note)
		self.assertEqual(doc_of(events[-1])["title"], stored.title)
