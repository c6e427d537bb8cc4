"""Everyday Desk and REST flows produce the right events, once, in order, with the right changes."""

from __future__ import annotations

import frappe

from cauldron_fabric.tests.utils import EmissionCase, events_after, types_of


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
