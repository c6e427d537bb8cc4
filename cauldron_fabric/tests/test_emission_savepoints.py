"""Savepoints: one event for each committed change, none for a change rolled back to a savepoint
inside a transaction that then commits (Frappe tells no callback about such a rollback)."""

from __future__ import annotations

import frappe
from frappe.database.database import savepoint

from cauldron_fabric.tests.test_delivery_support import (
	DeliveryTestCase,
	deliveries,
	envelope_of,
	new_subscription,
	save_todo,
)
from cauldron_fabric.tests.test_emission_roles import (
	UserRolesCase,
	new_user,
	role_changes,
	set_roles,
)
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
	order_hooks,
	order_import,
	types_of,
)

CREATED = "fabric_test_order.created"

UPDATED = "fabric_test_order.updated"


def db_set_note_then_fail(doc, method=None) -> None:
	"""A hook (on_update, after_insert) that db_sets the document, then refuses the save when asked to."""
	doc.db_set("note", "set by on_update")
	if doc.flags.fabric_test_fail:
		frappe.throw("refused after a db_set")


def qty(event: dict, side: str) -> list:
	"""Returns the item quantities on one side of an event's table change."""
	return [row["qty"] for row in event["data"]["payload"]["changes"]["items"][side]]


class FrappeSavepoints:
	"""Sets and rolls back savepoints with ``frappe.db``'s methods."""

	@staticmethod
	def savepoint(name: str) -> None:
		frappe.db.savepoint(name)

	@staticmethod
	def roll_back_to(name: str) -> None:
		frappe.db.rollback(save_point=name)


class RawSavepoints:
	"""Sets and rolls back savepoints in raw SQL through ``frappe.db.sql``, the name rolled back to
	written quoted and in capitals (MariaDB compares savepoint names without case). What the
	fabric holds for the commit did not follow them: a rollback to one left the events of the
	writes it undid (a document created twice, an update of rows rolled back, a deny list or a
	subscription rolled back still applied)."""

	@staticmethod
	def savepoint(name: str) -> None:
		frappe.db.sql(f"SAVEPOINT {name}")

	@staticmethod
	def roll_back_to(name: str) -> None:
		frappe.db.sql(f"ROLLBACK WORK TO `{name.upper()}`")


class TestDocumentsInSavepoints(FrappeSavepoints, EmissionCase):
	"""Documents saved, db_set or deferred inside a savepoint that is rolled back."""

	def test_a_document_saved_in_a_rolled_back_savepoint_has_no_event(self):
		self.savepoint("fabric_test")
		dropped = new_order("rolled back to a savepoint")
		self.roll_back_to("fabric_test")
		kept = new_order("committed after the savepoint")
		frappe.db.commit()
		events = events_after(self.start, ORDER)
		self.assertEqual([(e["type"], e["data"]["entityId"]) for e in events], [(CREATED, kept.name)])
		self.assertFalse(frappe.db.exists(ORDER, dropped.name))

	def test_frappes_savepoint_block_that_catches_keeps_only_the_committed_document(self):
		with savepoint(catch=frappe.ValidationError):
			new_order("inside a failed savepoint block")
			frappe.throw("refused")
		kept = new_order("after the block")
		frappe.db.commit()
		self.assertEqual([e["data"]["entityId"] for e in events_after(self.start, ORDER)], [kept.name])

	def test_a_db_set_rolled_back_to_a_savepoint_is_no_event(self):
		order = new_order("db_set in a savepoint")
		frappe.db.commit()
		self.savepoint("fabric_test")
		order.db_set("note", "rolled back")
		self.roll_back_to("fabric_test")
		frappe.db.commit()
		self.assertEqual(types_of(events_after(self.start, ORDER)), [CREATED])

	def test_a_db_set_of_a_failed_save_rolled_back_to_a_savepoint_is_not_recorded_at_commit(self):
		# The on_update hook's db_set is held for the save, which raises: held until commit.
		order = new_order("deferred db_set in a savepoint")
		frappe.db.commit()
		with order_hooks(__name__, on_update="db_set_note_then_fail"):
			self.savepoint("fabric_test")
			failing = frappe.get_doc(ORDER, order.name)
			failing.flags.fabric_test_fail = True
			failing.grand_total = 99
			with self.assertRaises(frappe.ValidationError):
				failing.save()
			self.roll_back_to("fabric_test")
		# Another change of the same document, outside the savepoint, commits.
		again = frappe.get_doc(ORDER, order.name)
		again.title = "renamed after the savepoint"
		again.save()
		frappe.db.commit()
		_created, update = events_after(self.start, ORDER)
		self.assertEqual(
			update["data"]["payload"]["changes"],
			{"title": {"old": order.title, "new": "renamed after the savepoint"}},
		)
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), None)

	def test_an_insert_rolled_back_to_a_savepoint_and_made_again_is_created_once(self):
		# The failed insert's own db_set is held for the commit, where it would record the row
		# that the second insert of the same name wrote as a second creation.
		name = f"fabric-sp-{frappe.generate_hash(length=8)}"
		with order_hooks(__name__, after_insert="db_set_note_then_fail"):
			self.savepoint("fabric_test")
			failing = frappe.get_doc({"doctype": ORDER, "title": "first try"})
			failing.flags.fabric_test_fail = True
			with self.assertRaises(frappe.ValidationError):
				failing.insert(set_name=name)
			self.roll_back_to("fabric_test")
		frappe.get_doc({"doctype": ORDER, "title": "second try"}).insert(set_name=name)
		frappe.db.commit()
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), [CREATED])
		self.assertEqual(events[0]["data"]["payload"]["doc"]["title"], "second try")


class TestRowsInSavepoints(FrappeSavepoints, EmissionCase):
	"""Child rows changed on their own inside a savepoint that is rolled back."""

	def test_rows_changed_alone_in_a_rolled_back_savepoint_are_no_update(self):
		order = new_order("rows in a savepoint")
		frappe.db.commit()
		first, second = order.items
		self.savepoint("fabric_test")
		first.db_set("qty", 9)
		row = frappe.get_doc(ORDER_ITEM, second.name)
		row.item = "ladle, rolled back"
		row.save()
		frappe.delete_doc(ORDER_ITEM, first.name)
		self.roll_back_to("fabric_test")
		frappe.db.commit()
		self.assertEqual(types_of(events_after(self.start, ORDER)), [CREATED])

	def test_rows_changed_alone_in_a_rolled_back_savepoint_are_no_update_when_unchanged_saves_emit(self):
		# Emitting saves that change nothing must not turn a rolled-back change into an event.
		with fabric_settings(emit_unchanged_saves=1):
			order = new_order("rows in a savepoint, unchanged saves on")
			frappe.db.commit()
			self.savepoint("fabric_test")
			order.items[0].db_set("qty", 9)
			self.roll_back_to("fabric_test")
			frappe.db.commit()
			self.assertEqual(types_of(events_after(self.start, ORDER)), [CREATED])

	def test_rows_changed_after_a_rolled_back_savepoint_report_only_the_committed_rows(self):
		order = new_order("rows after a savepoint")
		frappe.db.commit()
		second = order.items[1]
		self.savepoint("fabric_test")
		order.items[0].qty = 5
		order.save()
		frappe.get_doc(ORDER_ITEM, second.name).db_set("qty", 8)
		self.roll_back_to("fabric_test")
		frappe.get_doc(ORDER_ITEM, second.name).db_set("qty", 9)
		frappe.db.commit()
		_created, update = events_after(self.start, ORDER)
		self.assertEqual(update["type"], UPDATED)
		self.assertEqual([qty(update, "old"), qty(update, "new")], [[1, 3], [1, 9]])
		self.assertEqual(update["data"]["payload"]["via"], "db_set")

	def test_a_savepoint_released_inside_one_rolled_back_is_rolled_back_with_it(self):
		order = new_order("rows in a released savepoint")
		frappe.db.commit()
		second = order.items[1]
		self.savepoint("fabric_outer")
		with savepoint():  # released when the block ends without an error
			order.items[0].qty = 5
			order.save()
			frappe.get_doc(ORDER_ITEM, second.name).db_set("qty", 8)
		self.roll_back_to("fabric_outer")
		frappe.get_doc(ORDER_ITEM, second.name).db_set("qty", 9)
		frappe.db.commit()
		_created, update = events_after(self.start, ORDER)
		self.assertEqual([qty(update, "old"), qty(update, "new")], [[1, 3], [1, 9]])

	def test_rows_changed_before_a_savepoint_rolled_back_later_are_still_recorded(self):
		order = new_order("rows before a savepoint")
		frappe.db.commit()
		order.items[0].db_set("qty", 4)
		self.savepoint("fabric_test")
		order.items[1].db_set("qty", 8)
		# The parent's save records the rows' update before its own: both are rolled back.
		again = frappe.get_doc(ORDER, order.name)
		again.title = "saved in the savepoint"
		again.save()
		self.roll_back_to("fabric_test")
		frappe.db.commit()
		_created, update = events_after(self.start, ORDER)
		self.assertEqual([qty(update, "old"), qty(update, "new")], [[1, 3], [4, 3]])


class TestRolesInSavepoints(FrappeSavepoints, UserRolesCase):
	"""A user's role change (system.change) rolled back to a savepoint."""

	def test_a_role_change_rolled_back_to_a_savepoint_is_no_system_change(self):
		user = new_user("Blogger")
		frappe.db.commit()
		start = last_seq()
		self.savepoint("fabric_test")
		set_roles(user, "Blogger", "Translator")
		self.roll_back_to("fabric_test")
		set_roles(user, "Blogger", "Website Manager")
		frappe.db.commit()
		(change,) = role_changes(start, user)
		payload = change["data"]["payload"]
		self.assertEqual((payload["rolesAdded"], payload["rolesRemoved"]), (["Website Manager"], []))

	def test_a_disabled_role_rolled_back_to_a_savepoint_takes_nothing(self):
		role = frappe.get_doc({"doctype": "Role", "role_name": f"fabric-sp-{frappe.generate_hash(length=6)}"})
		role.insert(ignore_permissions=True)
		self.addCleanup(frappe.delete_doc, "Role", role.name, ignore_permissions=True, force=True)
		user = new_user(role.name)
		frappe.db.commit()
		start = last_seq()
		self.savepoint("fabric_test")
		role.disabled = 1
		role.save(ignore_permissions=True)
		self.roll_back_to("fabric_test")
		frappe.db.commit()
		self.assertEqual(role_changes(start, user), [])
		self.assertEqual(frappe.get_roles(user).count(role.name), 1)


# The order whose row a refused import row changes before it raises (set by the test).
held_row_order: list[str] = []


def refuse_titled_refused(doc, method=None) -> None:
	"""A validate hook that changes another order's row alone, then refuses the import row."""
	if doc.title == "refused":
		frappe.get_doc(ORDER, held_row_order[0]).items[0].db_set("qty", 42)
		frappe.throw("this row is refused")


class TestDataImportWithARefusedRow(EmissionCase):
	def test_events_exactly_for_the_imported_rows(self):
		from frappe.core.doctype.data_import.data_import import start_import

		other = new_order("changed by the refused row")
		held_row_order[:] = [other.name]
		self.addCleanup(held_row_order.clear)
		data_import = order_import("Title,Grand Total\nimported one,10\nrefused,20\nimported three,30\n")
		frappe.db.commit()
		start = last_seq()
		with order_hooks(__name__, validate="refuse_titled_refused"):
			start_import(data_import.name)
		frappe.db.rollback()
		self.assertEqual(frappe.db.get_value("Data Import", data_import.name, "status"), "Partial Success")
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [CREATED, CREATED])
		self.assertEqual(
			[e["data"]["payload"]["doc"]["title"] for e in events], ["imported one", "imported three"]
		)
		self.assertEqual(frappe.db.get_value(ORDER_ITEM, other.items[0].name, "qty"), 1)


class TestSettingsInSavepoints(FrappeSavepoints, EmissionCase):
	def test_a_deny_list_rolled_back_to_a_savepoint_denies_nothing(self):
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.rollback)
		self.savepoint("fabric_test")
		settings = frappe.get_single("Fabric Settings")
		settings.append("denied_doctypes", {"document_type": ORDER})
		settings.save(ignore_permissions=True)
		new_order("denied in the savepoint")
		self.roll_back_to("fabric_test")
		kept = new_order("after the savepoint")
		frappe.db.commit()
		self.assertEqual([e["data"]["entityId"] for e in events_after(self.start, ORDER)], [kept.name])


class TestDeliveriesInSavepoints(FrappeSavepoints, DeliveryTestCase):
	def test_no_delivery_remains_for_an_event_rolled_back_to_a_savepoint(self):
		subscription = self.subscription(webhook_url="https://a.example.com/hook")
		self.savepoint("fabric_test")
		frappe.get_doc({"doctype": "ToDo", "description": self.tag}).insert()
		self.roll_back_to("fabric_test")
		kept = save_todo(self.tag)
		rows = deliveries(subscription.name)
		self.assertEqual([envelope_of(row)["data"]["entityId"] for row in rows], [kept])
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "ToDo", {"description": self.tag})

	def test_no_delivery_is_planned_for_a_subscription_rolled_back_to_a_savepoint(self):
		self.savepoint("fabric_test")
		dropped = new_subscription(self.tag, webhook_url="https://a.example.com/hook")
		frappe.get_doc({"doctype": "ToDo", "description": self.tag}).insert()
		self.roll_back_to("fabric_test")
		save_todo(self.tag)
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "ToDo", {"description": self.tag})
		self.addCleanup(frappe.db.delete, "Event Delivery", {"subscription": dropped.name})
		self.assertEqual(deliveries(dropped.name), [])

	def test_nor_for_one_saved_in_a_savepoint_released_inside_the_rolled_back_one(self):
		self.savepoint("fabric_outer")
		with savepoint():
			dropped = new_subscription(self.tag, webhook_url="https://a.example.com/hook")
		frappe.get_doc({"doctype": "ToDo", "description": self.tag}).insert()
		self.roll_back_to("fabric_outer")
		save_todo(self.tag)
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "ToDo", {"description": self.tag})
		self.addCleanup(frappe.db.delete, "Event Delivery", {"subscription": dropped.name})
		self.assertEqual(deliveries(dropped.name), [])


class TestDocumentsInRawSavepoints(RawSavepoints, TestDocumentsInSavepoints):
	"""Documents, with savepoints in raw SQL."""


class TestRowsInRawSavepoints(RawSavepoints, TestRowsInSavepoints):
	"""Rows, with savepoints in raw SQL."""


class TestRolesInRawSavepoints(RawSavepoints, TestRolesInSavepoints):
	"""Roles, with savepoints in raw SQL."""


class TestSettingsInRawSavepoints(RawSavepoints, TestSettingsInSavepoints):
	"""Settings, with savepoints in raw SQL."""


class TestDeliveriesInRawSavepoints(RawSavepoints, TestDeliveriesInSavepoints):
	"""Deliveries, with savepoints in raw SQL."""
