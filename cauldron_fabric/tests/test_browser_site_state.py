"""The browser suite's record of what it changes on its site, put back after a run that was killed."""

from __future__ import annotations

import os
import tempfile

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils.password import get_decrypted_password, set_encrypted_password

from cauldron_fabric.tests.browser import site_state
from cauldron_fabric.tests.browser.desk import ensure_desk_user
from cauldron_fabric.tests.test_approval_support import approval_requested, ensure_people, receive
from cauldron_fabric.tests.test_desk_actions import consumer_dead_letter


def current() -> dict:
	"""Returns the values the browser tests change, as committed."""
	return {
		"setup_complete": frappe.db.get_single_value("System Settings", "setup_complete", cache=False),
		**{
			field: frappe.db.get_single_value("Fabric Settings", field, cache=False)
			for field in site_state.FABRIC_SETTINGS
		},
		**{
			field: get_decrypted_password("Fabric Settings", "Fabric Settings", field, raise_exception=False)
			for field in site_state.PASSWORDS
		},
	}


class TestBrowserSiteState(FrappeTestCase):
	def test_what_a_killed_browser_run_left_changed_is_put_back(self):
		# browser_suite.sh stops a hung run with SIGTERM, which ends Python before any cleanup:
		# the setup wizard flag and Fabric Settings pointing at the run's broker stayed on the
		# site the next Frappe suite runs on. The script saves them first and restores them after.
		before = current()
		path = os.path.join(tempfile.mkdtemp(), "browser-state.json")
		site_state.save(path)
		self.addCleanup(site_state.restore, path)
		# As the browser tests leave the site when killed halfway (all committed).
		frappe.db.set_single_value("System Settings", "setup_complete", 1 - (before["setup_complete"] or 0))
		for field, value in (
			("bootstrap_servers", "127.0.0.1:1"),
			("rabbitmq_url", "amqp://guest@127.0.0.1:1/%2F"),
			("rabbitmq_exchange", "fabric.browser.dead"),
			("topic_template", "fabricbrowserdead.{domain}"),
			("message_timeout_ms", 3000),
		):
			frappe.db.set_single_value("Fabric Settings", field, value)
		# As a save of the form stores the password typed into it.
		set_encrypted_password("Fabric Settings", "Fabric Settings", "left-behind", "rabbitmq_password")
		frappe.db.set_single_value("Fabric Settings", "rabbitmq_password", "*" * len("left-behind"))
		frappe.db.commit()
		self.assertNotEqual(current(), before)
		site_state.restore(path)
		self.assertEqual(current(), before)
		self.assertFalse(os.path.exists(path), "the saved state is used once")
		self.assertEqual(
			frappe.get_cached_doc("Fabric Settings").bootstrap_servers, before["bootstrap_servers"]
		)
		site_state.restore(path)  # nothing saved: nothing to do
		self.assertEqual(current(), before)

	def test_the_tests_desk_user_is_removed_with_what_a_killed_run_left_naming_it(self):
		# The user the tests log in as stayed on the site after every run. A run killed halfway
		# also keeps the request or letter it was on, naming the user, which Frappe would not
		# delete it past; nor past no other System Manager (any real site has one; ensure_people).
		ensure_people()
		path = os.path.join(tempfile.mkdtemp(), "browser-state.json")
		site_state.save(path)
		self.addCleanup(site_state.restore, path)
		ensure_desk_user()
		request = receive(approval_requested(users=(site_state.USER,), roles=()))
		letter = consumer_dead_letter()
		letter.db_set({"status": "Retried", "resolved_by": site_state.USER})
		frappe.db.commit()
		site_state.restore(path)
		self.assertFalse(frappe.db.exists("User", site_state.USER))
		self.assertFalse(frappe.db.exists("Approval Request", request))
		self.assertFalse(frappe.db.exists("Approval Request Approver", {"approver": site_state.USER}))
		self.assertFalse(frappe.db.exists("ToDo", {"reference_name": request}))
		self.assertFalse(frappe.db.exists("Dead Letter", letter.name))
		self.assertFalse(frappe.db.exists("Contact", {"email_id": site_state.USER}))
