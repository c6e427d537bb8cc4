"""Install guards: the app installs on MariaDB sites and refuses others with a clear reason."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.install import before_install, check_database


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
