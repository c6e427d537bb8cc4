"""Writes to a DocType whose app's code is no longer on the bench (removed without being
uninstalled): its table and DocType record remain, and Frappe's writes without document hooks
still work on it. The fabric built its event through the DocType's controller, which cannot be
imported, and so failed the write after it was made."""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.utils import EmissionCase, ensure_custom_doctype, events_after, last_seq, payload

GHOST = "Fabric Test Ghost"
# A module no app on the bench has: Frappe cannot import the DocType's controller.
GONE_MODULE = "Fabric Gone Module"

watch_sql()


def forget_controller() -> None:
	"""Drops the DocType's cached meta and controller (Frappe keeps the class per site)."""
	frappe.clear_cache(doctype=GHOST)
	frappe.controllers.get(frappe.local.site, {}).pop(GHOST, None)


class TestDocTypeWhoseAppIsGone(EmissionCase):
	def setUp(self):
		super().setUp()
		ensure_custom_doctype(GHOST, [{"fieldname": "title", "fieldtype": "Data", "label": "Title"}])
		self.name = frappe.get_doc({"doctype": GHOST, "title": "before"}).insert().name
		frappe.db.sql("UPDATE `tabDocType` SET custom = 0, module = %s WHERE name = %s", (GONE_MODULE, GHOST))
		frappe.db.commit()
		forget_controller()
		self.addCleanup(forget_controller)
		self.addCleanup(frappe.db.commit)
		self.addCleanup(
			frappe.db.sql, "UPDATE `tabDocType` SET custom = 1, module = 'Custom' WHERE name = %s", (GHOST,)
		)
		with self.assertRaises(frappe.DoesNotExistError):  # what Frappe itself makes of it now
			frappe.get_doc(GHOST, self.name)
		self.start = last_seq()

	def test_a_set_value_is_recorded_from_the_row(self):
		frappe.db.set_value(GHOST, self.name, "title", "after")
		(event,) = events_after(self.start, GHOST)
		self.assertEqual(event["type"], "fabric_test_ghost.updated")
		self.assertEqual(payload(event)["changes"], {"title": {"old": "before", "new": "after"}})
		self.assertEqual(payload(event)["doc"]["title"], "after")

	def test_a_raw_update_and_delete_are_recorded_from_the_rows(self):
		frappe.db.sql(f"UPDATE `tab{GHOST}` SET title = 'raw' WHERE name = %s", self.name)
		frappe.db.delete(GHOST, {"name": self.name})
		updated, deleted = events_after(self.start, GHOST)
		self.assertEqual(payload(updated)["changes"], {"title": {"old": "before", "new": "raw"}})
		self.assertEqual(deleted["type"], "fabric_test_ghost.deleted")
		self.assertEqual(payload(deleted)["doc"]["title"], "raw")
