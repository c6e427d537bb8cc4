"""DocTypes deleted inside a migrate, an app install or an uninstall are system.change events too."""

from __future__ import annotations

from contextlib import contextmanager

import frappe
from frappe.migrate import SiteMigration
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.emit.deleted_doctypes import _SNAPSHOTS, APP
from cauldron_fabric.tests.utils import ensure_custom_doctype, last_seq

FIELDS = [{"fieldname": "title", "fieldtype": "Data", "label": "Title"}]
HOOKS_MODULE = "cauldron_fabric.emit.deleted_doctypes."


class TestDeletedDocTypes(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")
		self.name = "Fabric Vanishing " + frappe.generate_hash(length=6)
		ensure_custom_doctype(self.name, FIELDS)
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.forget_doctype(self.name)
		self.start = last_seq()

	def forget_doctype(self, name: str) -> None:
		"""Deletes the DocType after the test, and its table (deleting a DocType leaves it)."""
		self.addCleanup(frappe.db.sql_ddl, f"DROP TABLE IF EXISTS `tab{name}`")
		self.addCleanup(frappe.delete_doc, "DocType", name, ignore_missing=True, force=True)

	def deleted_events(self, name: str | None = None) -> list[tuple[str, dict]]:
		"""Returns (status, envelope) of each DocType deleted event recorded since the test began."""
		rows = frappe.db.sql(
			"""SELECT status, envelope FROM `tabEvent Log` WHERE name > %s AND entity = 'DocType'
			AND entity_id = %s AND action = 'deleted' ORDER BY name""",
			(self.start, name or self.name),
		)
		return [(status, frappe.parse_json(envelope)) for status, envelope in rows]

	def test_a_doctype_a_patch_deletes_during_a_migrate_is_recorded(self):
		# Frappe's own migrate path: every app's before_migrate, the patch, then every after_migrate.
		migration = SiteMigration(skip_search_index=True)
		frappe.flags.in_migrate = True
		try:
			migration.pre_schema_updates()
			with patching():
				frappe.delete_doc("DocType", self.name)
			migration.post_schema_updates()
		finally:
			frappe.flags.in_migrate = False
		((status, event),) = self.deleted_events()
		self.assertNotEqual(status, "Invalid", "the catalog's system.change takes via migrate")
		self.assertEqual(event["type"], "system.change")
		payload = event["data"]["payload"]
		self.assertEqual(
			(payload["doctype"], payload["name"], payload["action"], payload["via"]),
			("DocType", self.name, "deleted", "migrate"),
		)
		# As kept in Deleted Document: the DocType whole, as a Desk deletion reports it.
		self.assertEqual([f["fieldname"] for f in payload["doc"]["fields"]], ["title"])
		self.assertEqual(payload["doc"]["module"], "Custom")

	def test_a_doctype_deleted_without_a_trace_is_recorded_as_the_snapshot_read_it(self):
		# An earlier DocType of that name, deleted and kept in Deleted Document, is not this one.
		frappe.delete_doc("DocType", self.name)
		ensure_custom_doctype(self.name, FIELDS)
		frappe.db.commit()
		self.start = last_seq()
		run_hooks("before_app_install", "some_app")
		with patching():
			frappe.delete_doc("DocType", self.name, delete_permanently=True)
		run_hooks("after_app_install", "some_app")
		((_status, event),) = self.deleted_events()
		payload = event["data"]["payload"]
		self.assertEqual(payload["via"], "install")
		doc = payload["doc"]
		self.assertEqual(
			(doc["doctype"], doc["name"], doc["module"], doc["custom"], doc["istable"]),
			("DocType", self.name, "Custom", 1, 0),
		)
		self.assertEqual(doc["fields"], [])

	def test_an_uninstall_records_the_doctypes_it_deleted_and_commits_them(self):
		run_hooks("before_app_uninstall", "some_app")
		# As frappe.installer.remove_app deletes an app's DocTypes, then commits.
		frappe.flags.in_uninstall = True
		try:
			frappe.delete_doc("DocType", self.name, ignore_on_trash=True, force=True)
			frappe.db.commit()
			run_hooks("after_app_uninstall", "some_app")
		finally:
			frappe.flags.in_uninstall = False
		frappe.db.rollback()  # Frappe commits nothing after the hook: what it recorded stays
		((_status, event),) = self.deleted_events()
		self.assertEqual(event["data"]["payload"]["via"], "uninstall")
		self.assertEqual([f["fieldname"] for f in event["data"]["payload"]["doc"]["fields"]], ["title"])

	def test_a_deletion_with_a_feed_entry_inside_a_migrate_is_recorded_once(self):
		run_hooks("before_migrate")
		frappe.delete_doc("DocType", self.name)  # Desk-style: its feed entry records the event
		run_hooks("after_migrate")
		((_status, event),) = self.deleted_events()
		self.assertNotIn("via", event["data"]["payload"])

	def test_a_doctype_renamed_inside_a_migrate_is_no_deletion(self):
		new_name = self.name + " Renamed"
		self.forget_doctype(new_name)
		run_hooks("before_migrate")
		with patching():
			frappe.rename_doc("DocType", self.name, new_name, force=True)
		run_hooks("after_migrate")
		self.assertEqual(self.deleted_events(), [])
		renamed = frappe.db.sql(
			"SELECT COUNT(*) FROM `tabEvent Log` WHERE name > %s AND entity_id = %s AND action = 'renamed'",
			(self.start, new_name),
		)[0][0]
		self.assertEqual(renamed, 1)

	def test_a_doctype_renamed_then_deleted_inside_a_migrate_is_deleted_under_its_new_name(self):
		# The renamed event moved it to its new name: the deletion must be told of that name.
		new_name = self.name + " Moved"
		self.forget_doctype(new_name)
		run_hooks("before_migrate")
		with patching():
			frappe.rename_doc("DocType", self.name, new_name, force=True)
			frappe.delete_doc("DocType", new_name)
		run_hooks("after_migrate")
		self.assertEqual(self.deleted_events(), [])
		((_status, event),) = self.deleted_events(new_name)
		payload = event["data"]["payload"]
		self.assertEqual((payload["name"], payload["via"]), (new_name, "migrate"))
		self.assertEqual(payload["doc"]["name"], new_name)

	def test_a_deletion_committed_by_a_migrate_that_failed_is_recorded_by_the_next_migrate(self):
		run_hooks("before_migrate")
		with patching():
			frappe.delete_doc("DocType", self.name)
		frappe.db.commit()  # Frappe commits each patch; a later one fails: no after_migrate
		_SNAPSHOTS.clear()  # that process ended with it
		run_hooks("before_migrate")  # the next migrate, once the failing patch is fixed
		run_hooks("after_migrate")
		((_status, event),) = self.deleted_events()
		self.assertEqual(event["data"]["payload"]["via"], "migrate")
		self.assertEqual([f["fieldname"] for f in event["data"]["payload"]["doc"]["fields"]], ["title"])
		run_hooks("before_migrate")  # and the one after that starts afresh
		run_hooks("after_migrate")
		self.assertEqual(len(self.deleted_events()), 1)

	def test_nothing_is_recorded_when_nothing_was_deleted(self):
		for before, after in (
			("before_migrate", "after_migrate"),
			("before_app_install", "after_app_install"),
			("before_app_uninstall", "after_app_uninstall"),
		):
			args = () if before == "before_migrate" else ("some_app",)
			run_hooks(before, *args)
			run_hooks(after, *args)
		self.assertEqual(last_seq(), self.start)


def run_hooks(hook: str, *args: str) -> None:
	"""Calls the app's handlers of ``hook`` found by their hooks.py registration (the deleted
	DocTypes' ones: its after_migrate also syncs the registry, which these tests do not need)."""
	handlers = [fn for fn in frappe.get_hooks(hook, app_name=APP) if fn.startswith(HOOKS_MODULE)]
	if not handlers:
		raise AssertionError(f"no {hook} hook of {HOOKS_MODULE} is registered in hooks.py")
	for fn in handlers:
		frappe.get_attr(fn)(*args)


@contextmanager
def patching():
	"""Runs the block as a patch runs (Frappe's patch handler sets in_patch)."""
	frappe.flags.in_patch = True
	try:
		yield
	finally:
		frappe.flags.in_patch = False
