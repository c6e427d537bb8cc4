"""Fabric Settings choose which set_value writes count: by default those that keep ``modified``
and Frappe's own counters, sync marks and schedules are bookkeeping, no event; *Every write*
records them, *None* nothing. A site the app left records nothing.
"""

from __future__ import annotations

import json

import frappe

from cauldron_fabric.emit.policy import SET_VALUES_ALL, SET_VALUES_NONE, SET_VALUES_THAT_UPDATE_MODIFIED
from cauldron_fabric.emit.set_values import watch_set_values
from cauldron_fabric.patches import set_value_writes_are_recorded_by_default
from cauldron_fabric.tests.test_emission_set_value_support import CREATED, stored_without_hooks
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	events_after,
	fabric_settings,
	last_seq,
	listed_patches,
	new_order,
	types_of,
)

# What before_request and before_job do: a test run alone has no document hook to import it.
watch_set_values()


# set_values Frappe 15's scheduled jobs make on every run, sync or backup (besides a Document
# Naming Rule's counter and an Email Account's uidnext, tested with Frappe's own code above).
FRAPPES_SCHEDULED_WRITES = (
	("Auto Repeat", "next_schedule_date"),  # make_auto_repeat_entry, daily
	("Google Contacts", "next_sync_token"),  # sync, daily
	("Google Contacts", "last_sync_on"),
	("Google Drive", "last_backup_on"),  # daily_backup and weekly_backup
	("Email Account", "uidnext"),  # pull, every ten minutes
)


def value_for(doctype: str, field: str, number: int):
	"""Returns a value of ``field``'s type, different for each ``number``."""
	fieldtype = frappe.get_meta(doctype).get_field(field).fieldtype
	if fieldtype == "Int":
		return 1000 + number
	if fieldtype == "Date":
		return f"2031-01-{number:02d}"
	if fieldtype == "Datetime":
		return f"2031-01-01 10:00:{number:02d}"
	return f"token {number}"


def store_installed_apps(apps: list[str]) -> None:
	"""Stores the site's list of installed apps in this transaction, as bench uninstall-app does,
	without the document hooks of the apps it leaves out (set_global would run them)."""
	frappe.db.sql(
		"UPDATE `tabDefaultValue` SET `defvalue` = %s"
		" WHERE `parent` = '__global' AND `defkey` = 'installed_apps'",
		(json.dumps(apps),),
	)
	frappe.cache.hdel("defaults", "__global")
	frappe.local.request_cache.clear()  # frappe.get_installed_apps answers once per request
	frappe.local.fabric_policy = None


class TestWhichWritesCount(EmissionCase):
	def test_by_default_writes_that_keep_modified_are_bookkeeping(self):
		order = new_order("bookkeeping")
		start = last_seq()
		frappe.db.set_value(ORDER, order.name, "note", "kept modified", update_modified=False)
		# Positionally too: dt, dn, field, val, modified, modified_by, update_modified.
		frappe.db.set_value(ORDER, order.name, "title", "kept again", None, None, False)
		self.assertEqual(events_after(start, ORDER), [])
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), "kept modified")

	def test_a_site_the_app_left_records_nothing(self):
		# The wraps stay in a process after `bench uninstall-app` took the app and its tables from
		# a site (web workers and workers keep running): there the policy must not read Fabric
		# Settings, whose DocType is gone, or every set_value on the site would fail.
		order = new_order("after uninstall")
		apps = frappe.get_installed_apps()
		store_installed_apps([app for app in apps if app != "cauldron_fabric"])
		try:
			start = last_seq()
			frappe.db.set_value(ORDER, order.name, "note", "after uninstall")
			order.reload()
			order.title = "written by db_update"
			order.db_update()
			self.assertEqual(events_after(start, ORDER), [])
		finally:
			store_installed_apps(apps)
		self.assertIn("cauldron_fabric", frappe.get_installed_apps())

	def test_every_write_and_none(self):
		order = new_order("modes")
		for mode, expected in (
			(SET_VALUES_ALL, 2),
			(SET_VALUES_NONE, 0),
			(SET_VALUES_THAT_UPDATE_MODIFIED, 1),
		):
			with self.subTest(mode=mode), fabric_settings(capture_set_value=mode):
				start = last_seq()
				frappe.db.set_value(ORDER, order.name, "note", f"{mode} 1", update_modified=False)
				frappe.db.set_value(ORDER, order.name, "note", f"{mode} 2")
				self.assertEqual(len(events_after(start, ORDER)), expected)

	def test_by_default_frappes_own_counters_are_bookkeeping_too(self):
		# Frappe counts the names a Document Naming Rule gives with a set_value that updates
		# modified: by default that is no system.change for every document the rule names.
		rule = frappe.get_doc(
			{
				"doctype": "Document Naming Rule",
				"document_type": ORDER,
				"prefix": "FSV-.#####",
				"prefix_digits": 5,
				"priority": 99,
			}
		).insert()
		frappe.db.commit()
		try:
			for mode, expected in ((SET_VALUES_THAT_UPDATE_MODIFIED, 0), (SET_VALUES_ALL, 1)):
				with self.subTest(mode=mode), fabric_settings(capture_set_value=mode):
					start = last_seq()
					order = new_order("named by a rule")
					self.assertTrue(order.name.startswith("FSV-"))
					counted = events_after(start, "Document Naming Rule")
					self.assertEqual(len(counted), expected)
					self.assertEqual(types_of(events_after(start, ORDER)), [CREATED])
		finally:
			frappe.db.rollback()
			frappe.delete_doc("Document Naming Rule", rule.name, force=True)
			frappe.db.commit()

	def test_by_default_frappes_sync_marks_and_schedules_are_bookkeeping(self):
		# Frappe's scheduled jobs store these with set_values that update modified: by default
		# that is no event for every sync, backup or run; with Every write, one per write.
		for mode, expected in ((SET_VALUES_THAT_UPDATE_MODIFIED, 0), (SET_VALUES_ALL, 1)):
			with fabric_settings(capture_set_value=mode):
				for number, (doctype, field) in enumerate(FRAPPES_SCHEDULED_WRITES, start=1):
					with self.subTest(mode=mode, doctype=doctype, field=field):
						name = stored_without_hooks(doctype)
						start = last_seq()
						frappe.db.set_value(doctype, name, field, value_for(doctype, field, number))
						self.assertEqual(len(events_after(start, doctype)), expected)
				frappe.db.rollback()

	def test_the_patch_stores_the_default_on_settings_saved_before_the_field(self):
		self.assertIn("cauldron_fabric.patches.set_value_writes_are_recorded_by_default", listed_patches())
		frappe.db.sql(
			"DELETE FROM `tabSingles` WHERE doctype = 'Fabric Settings' AND field = 'capture_set_value'"
		)
		frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
		self.assertIsNone(frappe.get_single("Fabric Settings").capture_set_value)
		set_value_writes_are_recorded_by_default.execute()
		self.assertEqual(
			frappe.get_single("Fabric Settings").capture_set_value, SET_VALUES_THAT_UPDATE_MODIFIED
		)
		frappe.db.rollback()
