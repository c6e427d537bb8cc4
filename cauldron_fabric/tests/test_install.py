"""Install guards: the app installs on MariaDB sites and refuses others with a clear reason; an
uninstall of the app records nothing while Frappe deletes its DocTypes."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.emit.policy import LEAVING, clear_policy, current_policy
from cauldron_fabric.install import before_install, check_database
from cauldron_fabric.tests.utils import events_after, last_seq


class TestInstallGuard(FrappeTestCase):
	def test_this_mariadb_site_passes_the_guard(self):
		self.assertEqual(frappe.db.db_type, "mariadb")
		before_install()  # raises if the guard misjudged the site's database

	def test_a_postgres_site_is_refused_before_anything_is_installed(self):
		with self.assertRaises(frappe.ValidationError) as refused:
			check_database("postgres")
		message = str(refused.exception)
		self.assertIn("needs a MariaDB site", message)
		self.assertIn("postgres", message)


class TestUninstall(FrappeTestCase):
	def test_nothing_is_recorded_once_the_apps_uninstall_starts(self):
		# Frappe deletes the app's DocTypes one by one after its before_uninstall hooks, the Event
		# Log and Fabric Settings among them, while the app's document hooks still run: each
		# deletion is a change the fabric would record into a table already dropped, or judge by
		# settings whose DocType is gone (`bench uninstall-app cauldron_fabric` failed so).
		self.addCleanup(clear_policy)
		self.addCleanup(frappe.flags.pop, LEAVING, None)
		self.addCleanup(frappe.db.rollback)
		(hook,) = frappe.get_hooks("before_uninstall", app_name="cauldron_fabric")
		start = last_seq()
		todo = frappe.get_doc({"doctype": "ToDo", "description": "before leaving"}).insert()
		self.assertEqual(len(events_after(start, "ToDo", todo.name)), 1)
		frappe.get_attr(hook)()
		self.assertFalse(current_policy().enabled)
		frappe.get_doc({"doctype": "ToDo", "description": "while leaving"}).insert()
		frappe.db.set_value("ToDo", todo.name, "description", "still leaving")
		self.assertEqual(len(events_after(start)), 1)
