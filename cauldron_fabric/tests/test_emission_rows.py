"""Child table rows: changed with their parent or on their own, each change is an update of the parent."""

from __future__ import annotations

import frappe

from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	ensure_custom_doctype,
	events_after,
	new_order,
	save_with_hooks,
	types_of,
)

FORMS_PROBE = "Fabric Row Forms Probe"
FORMS_PROBE_ROW = "Fabric Row Forms Probe Row"
FORMS_ROW_FIELDS = [
	{"fieldname": "f", "fieldtype": "Float", "label": "F"},
	{"fieldname": "d", "fieldtype": "Date", "label": "D"},
	{"fieldname": "t", "fieldtype": "Data", "label": "T"},
]


def first_row_by_db_set_then_commit(doc, method=None) -> None:
	"""A hook that db_sets the first row's qty through the row loaded on its own, then commits,
	as some jobs' hooks do."""
	frappe.get_doc(ORDER_ITEM, doc.items[0].name).db_set("qty", 42)
	frappe.db.commit()


class TestChildRows(EmissionCase):
	"""A row's change is its parent's update, with old and new rows."""

	def test_child_table_changes_show_old_and_new_rows(self):
		order = new_order("rows")
		order.items[1].qty = 7
		order.save()
		changes = events_after(self.start, ORDER)[-1]["data"]["payload"]["changes"]
		self.assertEqual([r["qty"] for r in changes["items"]["old"]], [1, 3])
		self.assertEqual([r["qty"] for r in changes["items"]["new"]], [1, 7])

	def test_a_row_changed_on_its_own_is_an_update_of_its_parent(self):
		# Frappe runs a row's hooks only when code changes the row itself, never in the
		# parent's save: ERPNext db_sets billed amounts row by row this way.
		order = new_order("rows alone")
		frappe.db.commit()
		first, second = order.items
		second.db_set("qty", 7)
		frappe.db.commit()
		row = frappe.get_doc(ORDER_ITEM, first.name)
		row.item = "cauldron, large"
		row.save()
		frappe.db.commit()
		frappe.delete_doc(ORDER_ITEM, second.name)
		frappe.db.commit()
		added = {"doctype": ORDER_ITEM, "parent": order.name, "parenttype": ORDER, "parentfield": "items"}
		frappe.get_doc({**added, "item": "spoon", "qty": 2, "idx": 2}).insert()
		frappe.db.commit()
		_created, db_set, saved, deleted, inserted = events_after(self.start, ORDER)
		self.assertEqual(types_of([db_set, saved, deleted, inserted]), ["fabric_test_order.updated"] * 4)
		self.assertEqual({e["data"]["entityId"] for e in (db_set, saved, deleted, inserted)}, {order.name})

		def items(event, side, field):
			return [r[field] for r in event["data"]["payload"]["changes"]["items"][side]]

		self.assertEqual(db_set["data"]["payload"]["via"], "db_set")
		self.assertEqual([items(db_set, "old", "qty"), items(db_set, "new", "qty")], [[1, 3], [1, 7]])
		self.assertNotIn("via", saved["data"]["payload"])
		self.assertEqual(items(saved, "new", "item"), ["cauldron, large", "ladle"])
		self.assertEqual(items(deleted, "old", "item"), ["cauldron, large", "ladle"])
		self.assertEqual(items(deleted, "new", "item"), ["cauldron, large"])
		self.assertEqual(items(inserted, "new", "item"), ["cauldron, large", "spoon"])

	def test_rows_changed_one_by_one_in_a_transaction_are_one_update_at_commit(self):
		order = new_order("rows in one go")
		frappe.db.commit()
		for row, qty in zip(order.items, (5, 6), strict=True):
			row.db_set("qty", qty)
		self.assertEqual(len(events_after(self.start, ORDER)), 1, "recorded before the commit")
		frappe.db.commit()
		_created, update = events_after(self.start, ORDER)
		changed = update["data"]["payload"]["changes"]["items"]
		self.assertEqual([[r["qty"] for r in changed[side]] for side in ("old", "new")], [[1, 3], [5, 6]])
		self.assertEqual(update["data"]["payload"]["via"], "db_set")
		second = new_order("rolled back rows")
		frappe.db.commit()
		second.items[0].db_set("qty", 9)
		frappe.db.rollback()
		frappe.db.commit()
		self.assertEqual(types_of(events_after(self.start, ORDER))[2:], ["fabric_test_order.created"])

	def test_rows_changed_alone_after_a_refused_commit_are_still_recorded(self):
		# Frappe drops the after-rollback callbacks before it runs the before-commit ones, so a
		# commit that one of them refuses is rolled back without the fabric being told.
		def refuse() -> None:
			raise frappe.ValidationError("refused by a before_commit callback")

		order = new_order("rows after a refused commit")
		frappe.db.commit()
		frappe.db.before_commit.add(refuse)
		order.items[0].db_set("qty", 5)
		with self.assertRaises(frappe.ValidationError):
			frappe.db.commit()
		frappe.db.rollback()
		order.items[1].db_set("qty", 9)
		frappe.db.commit()
		_created, update = events_after(self.start, ORDER)
		changed = update["data"]["payload"]["changes"]["items"]
		self.assertEqual([[r["qty"] for r in changed[side]] for side in ("old", "new")], [[1, 3], [1, 9]])

	def test_rows_holding_values_in_other_forms_than_stored_change_only_when_the_stored_value_does(self):
		# Loaded rows hold dates as dates and decimals as read back; the object saved holds what
		# was assigned (0.1 + 0.2, a number in a text field). Compared as stored, nothing changed.
		ensure_custom_doctype(FORMS_PROBE_ROW, FORMS_ROW_FIELDS, istable=1)
		rows = {"fieldname": "rows", "fieldtype": "Table", "label": "Rows", "options": FORMS_PROBE_ROW}
		ensure_custom_doctype(FORMS_PROBE, [rows], autoname="hash")
		row = {"f": 0.1 + 0.2, "d": "2024-01-05", "t": 2026}
		probe = frappe.get_doc({"doctype": FORMS_PROBE, "rows": [row, {**row, "t": "x"}]}).insert()
		probe = frappe.get_doc(FORMS_PROBE, probe.name)
		probe.rows[0].f = 0.1 + 0.2
		probe.rows[0].t = 2026
		probe.save()  # the same values as stored
		probe.rows[1].d = "2024-01-06 10:30:00"
		probe.save()
		created, updated = events_after(self.start, FORMS_PROBE)
		self.assertEqual(
			types_of([created, updated]), ["fabric_row_forms_probe.created", "fabric_row_forms_probe.updated"]
		)
		old, new = (updated["data"]["payload"]["changes"]["rows"][side] for side in ("old", "new"))
		self.assertEqual(
			[(r["f"], r["d"], r["t"]) for r in old], [(0.3, "2024-01-05", "2026"), (0.3, "2024-01-05", "x")]
		)
		self.assertEqual(
			[(r["f"], r["d"], r["t"]) for r in new], [(0.3, "2024-01-05", "2026"), (0.3, "2024-01-06", "x")]
		)

	def test_a_row_changed_alone_and_committed_by_its_parents_save_hooks_is_told_again_after_its_event(self):
		# The commit records the row's change (the save has no event yet); the save's event then
		# carries the saved object's rows, which do not hold it: an update after that event tells
		# the table as stored again, so the parent's last event is not older than its rows.
		order, events = save_with_hooks(
			__name__, "row committed in a hook", on_update="first_row_by_db_set_then_commit"
		)
		self.assertEqual([e["data"]["payload"].get("via") for e in events], ["db_set", None, "db_set"])
		self.assertEqual(
			events[1]["data"]["payload"]["changes"],
			{"title": {"old": "row committed in a hook", "new": "saved"}},
		)
		told = events[2]["data"]["payload"]["changes"]["items"]
		self.assertEqual([[r["qty"] for r in told[side]] for side in ("old", "new")], [[1, 3], [42, 3]])
		stored = [row.qty for row in frappe.get_doc(ORDER, order.name).items]
		self.assertEqual([r["qty"] for r in events[-1]["data"]["payload"]["doc"]["items"]], stored)
