"""The list sidebar's counts of a virtual DocType (Fabric Circuit) count its documents by a field.

Frappe hands a grouped count of a virtual DocType to the controller's get_list, which lists
documents, not groups: the Fabric Circuit list's "Created By" showed each circuit's target with an
undefined count, and a group by State did the same.
"""

from __future__ import annotations

import json

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import counts
from cauldron_fabric.consume.requesting import site_breaker
from cauldron_fabric.tests.test_http_support import make_user

MANAGER = "virtual-counts-manager@example.com"


class TestVirtualDocTypeSidebarCounts(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		make_user(MANAGER, ["Fabric Manager"])

	def setUp(self):
		token = frappe.generate_hash(length=10)
		self.opened, self.closed = f"open-{token}.request", f"closed-{token}.request"
		breaker = site_breaker()
		for _ in range(breaker.policy.failure_threshold):
			breaker.failed(self.opened)
		breaker.failed(self.closed)
		for target in (self.opened, self.closed):
			self.addCleanup(breaker.store.reset, target)
		self.filters = json.dumps({"target": ["in", [self.opened, self.closed]]})
		frappe.set_user(MANAGER)
		self.addCleanup(frappe.set_user, "Administrator")

	def test_circuits_are_counted_by_state(self):
		groups = counts.get_group_by_count("Fabric Circuit", self.filters, "state")
		self.assertEqual(sorted((row["name"], row["count"]) for row in groups), [("closed", 1), ("open", 1)])

	def test_circuits_have_no_creator_to_count(self):
		self.assertEqual(counts.get_group_by_count("Fabric Circuit", self.filters, "owner"), [])

	def test_the_counts_keep_the_listing_filters(self):
		only_open = json.dumps({"target": self.opened})
		groups = counts.get_group_by_count("Fabric Circuit", only_open, "state")
		self.assertEqual([(row["name"], row["count"]) for row in groups], [("open", 1)])
