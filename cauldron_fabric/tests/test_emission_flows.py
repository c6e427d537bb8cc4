"""Everyday Desk and REST flows produce the right events, once, in order, with the right changes."""

from __future__ import annotations

import frappe

from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	doctype_hooks,
	ensure_custom_doctype,
	events_after,
	last_seq,
	new_order,
	order_hooks,
	types_of,
)

NUMBERED_BASKET = "Fabric Numbered Basket"


def qty_on_a_loaded_row(doc, method=None) -> None:
	"""A hook that db_sets the first row's qty through the row loaded on its own."""
	frappe.get_doc(ORDER_ITEM, doc.items[0].name).db_set("qty", 5)


def qty_on_a_loaded_copy(doc, method=None) -> None:
	"""A hook that db_sets the first row's qty through another loaded copy of the parent."""
	frappe.get_doc(doc.doctype, doc.name).items[0].db_set("qty", 5)


def qty_on_its_own_row(doc, method=None) -> None:
	"""A hook that db_sets the first row's qty through the row of the document being saved."""
	doc.items[0].db_set("qty", 5)


def new_numbered_basket():
	"""Inserts a basket with two item rows, of a DocType named by autoincrement."""
	ensure_custom_doctype(
		NUMBERED_BASKET,
		[{"fieldname": "items", "fieldtype": "Table", "label": "Items", "options": ORDER_ITEM}],
		autoname="autoincrement",
	)
	return frappe.get_doc(
		{"doctype": NUMBERED_BASKET, "items": [{"item": "cauldron", "qty": 1}, {"item": "ladle", "qty": 3}]}
	).insert()


def table(event: dict, side: str, field: str = "qty") -> list:
	"""Returns one column of the items table an update's changes give on one side."""
	return [row[field] for row in event["data"]["payload"]["changes"]["items"][side]]


class TestInsertsThatWriteNothing(EmissionCase):
	def test_a_new_folder_whose_name_exists_is_not_created_again(self):
		# Desk's New Folder inserts with ignore_if_duplicate: on MariaDB Frappe swallows the
		# duplicate key and runs every hook all the same, yet no row was written.
		from frappe.core.api.file import create_new_folder

		folder = "fabric folder " + frappe.generate_hash(length=6)
		create_new_folder(folder, "Home")
		create_new_folder(folder, "Home")
		events = events_after(self.start, "File")
		self.assertEqual(types_of(events), ["file.created"])
		self.assertEqual(events[0]["data"]["entityId"], f"Home/{folder}")


class TestRowsChangedBeforeTheirParentsSave(EmissionCase):
	"""A row changed alone, then its parent saved in the same transaction (ERPNext db_sets an
	item's billed amount, then saves or submits the parent): each change once, in order."""

	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_the_row_change_comes_before_the_parents_update_and_is_not_repeated(self):
		order = new_order("row then parent")
		frappe.db.commit()
		start = last_seq()
		order.items[0].db_set("qty", 5)
		order = frappe.get_doc(ORDER, order.name)
		order.items[1].qty = 9
		order.save()
		frappe.db.commit()
		row_change, save = events_after(start, ORDER)
		self.assertEqual(types_of([row_change, save]), ["fabric_test_order.updated"] * 2)
		self.assertEqual(row_change["data"]["payload"]["via"], "db_set")
		self.assertEqual([table(row_change, "old"), table(row_change, "new")], [[1, 3], [5, 3]])
		self.assertEqual([table(save, "old"), table(save, "new")], [[5, 3], [5, 9]])

	def test_a_row_changed_before_a_submit_is_not_reported_after_it(self):
		order = new_order("row then submit")
		frappe.db.commit()
		start = last_seq()
		order.items[0].db_set("qty", 6)
		frappe.get_doc(ORDER, order.name).submit()
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(
			types_of(events),
			["fabric_test_order.updated", "fabric_test_order.submitted", "business.transaction"],
		)
		row_change = events[0]
		self.assertEqual([table(row_change, "old"), table(row_change, "new")], [[1, 3], [6, 3]])
		self.assertEqual(row_change["data"]["payload"]["doc"]["docstatus"], 0)

	def test_the_same_holds_for_a_parent_named_by_autoincrement(self):
		# Autoincrement names are integers on the parent, strings in its rows' parent column.
		basket = new_numbered_basket()
		frappe.db.commit()
		start = last_seq()
		frappe.get_doc(ORDER_ITEM, basket.items[0].name).db_set("qty", 5)
		basket = frappe.get_doc(NUMBERED_BASKET, basket.name)
		basket.items[1].qty = 9
		basket.save()
		frappe.db.commit()
		row_change, save = events_after(start, NUMBERED_BASKET)
		self.assertEqual([table(row_change, "old"), table(row_change, "new")], [[1, 3], [5, 3]])
		self.assertEqual([table(save, "old"), table(save, "new")], [[5, 3], [5, 9]])

	def test_a_parent_renamed_after_its_rows_changed_still_reports_them_before_the_rename(self):
		# The held change was keyed by the old name: at commit no parent had that name any more,
		# and the rows' update vanished from the stream without a word.
		order = new_order("row then rename")
		frappe.db.commit()
		start = last_seq()
		order.items[0].db_set("qty", 7)
		new_name = frappe.rename_doc(ORDER, order.name, order.name + "-moved")
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), ["fabric_test_order.updated", "fabric_test_order.renamed"])
		row_change = events[0]
		self.assertEqual(row_change["data"]["entityId"], order.name, "under the name it had then")
		self.assertEqual([table(row_change, "old"), table(row_change, "new")], [[1, 3], [7, 3]])
		self.assertEqual(events[1]["data"]["entityId"], new_name)

	def test_a_parent_deleted_after_its_rows_changed_reports_them_before_the_delete(self):
		order = new_order("row then delete")
		frappe.db.commit()
		start = last_seq()
		order.items[0].db_set("qty", 8)
		frappe.delete_doc(ORDER, order.name)
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), ["fabric_test_order.updated", "fabric_test_order.deleted"])
		self.assertEqual([table(events[0], "old"), table(events[0], "new")], [[1, 3], [8, 3]])


class TestRowsChangedDuringTheirParentsSave(EmissionCase):
	"""A parent's hooks (or another app's doc_events) change one of its rows through an object
	other than the row the save holds: the events still end at the table as committed."""

	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def save_with(self, hook: str, handler: str):
		order = new_order(handler)
		frappe.db.commit()
		start = last_seq()
		with order_hooks(__name__, **{hook: handler}):
			order.title = f"{handler} v2"
			order.save()
		frappe.db.commit()
		return order, events_after(start, ORDER)

	def test_a_row_changed_through_another_object_in_on_update_follows_the_save(self):
		for handler in ("qty_on_a_loaded_row", "qty_on_a_loaded_copy"):
			with self.subTest(handler=handler):
				order, events = self.save_with("on_update", handler)
				self.assertEqual(frappe.db.get_value(ORDER_ITEM, order.items[0].name, "qty"), 5)
				self.assertEqual(types_of(events), ["fabric_test_order.updated"] * 2)
				save, row_change = events
				self.assertEqual(
					save["data"]["payload"]["changes"], {"title": {"old": handler, "new": f"{handler} v2"}}
				)
				self.assertEqual([table(row_change, "old"), table(row_change, "new")], [[1, 3], [5, 3]])
				self.assertEqual(row_change["data"]["payload"]["via"], "db_set")
				self.assertEqual(row_change["data"]["payload"]["doc"]["title"], f"{handler} v2")

	def test_a_row_of_a_parent_named_by_autoincrement_changed_in_on_update_follows_the_save(self):
		# Frappe notes the saving parent under its integer name; the row says it in a string.
		basket = new_numbered_basket()
		frappe.db.commit()
		start = last_seq()
		with doctype_hooks(NUMBERED_BASKET, __name__, on_update="qty_on_a_loaded_row"):
			basket.items[1].qty = 9
			basket.save()
		frappe.db.commit()
		save, row_change = events_after(start, NUMBERED_BASKET)
		self.assertEqual([table(save, "old"), table(save, "new")], [[1, 3], [1, 9]])
		self.assertEqual([table(row_change, "old"), table(row_change, "new")], [[1, 9], [5, 9]])
		self.assertEqual(row_change["data"]["payload"]["via"], "db_set")

	def test_a_row_changed_through_its_own_object_in_on_update_is_part_of_the_save(self):
		_, events = self.save_with("on_update", "qty_on_its_own_row")
		(save,) = events
		self.assertEqual([table(save, "old"), table(save, "new")], [[1, 3], [5, 3]])

	def test_a_row_changed_through_another_object_in_validate_is_overwritten_and_no_event(self):
		# The save then writes every row from memory: the loaded row's change never commits.
		order, events = self.save_with("validate", "qty_on_a_loaded_row")
		self.assertEqual(frappe.db.get_value(ORDER_ITEM, order.items[0].name, "qty"), 1)
		(save,) = events
		self.assertEqual(
			save["data"]["payload"]["changes"],
			{"title": {"old": "qty_on_a_loaded_row", "new": "qty_on_a_loaded_row v2"}},
		)
