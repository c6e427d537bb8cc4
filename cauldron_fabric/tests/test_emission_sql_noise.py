"""Frappe's own raw SQL bookkeeping is no event: writes that keep track of use (a login's time
and address, how often a document is linked) rather than change a document (emit/sql_writes.py)."""

from __future__ import annotations

import frappe
from frappe.model.utils.link_count import update_link_count

from cauldron_fabric.emit.watch import watch_sql
from cauldron_fabric.tests.test_http_support import PASSWORD, HttpCase, request
from cauldron_fabric.tests.utils import ORDER, ORDER_ITEM, EmissionCase, events_after, last_seq, new_order

# What before_request and before_job do: a test run alone may have no document hook to import it.
watch_sql()


def vias(events: list[dict]) -> list:
	return [event["data"]["payload"].get("via") for event in events]


class TestLogins(HttpCase):
	def test_a_login_is_its_login_event_not_an_update_of_the_user(self):
		# Frappe's Session.start writes last_login, last_ip and last_active with a raw UPDATE.
		login = request("post", "/api/method/login", data={"usr": self.clerk, "pwd": PASSWORD})
		self.assertEqual(login.status_code, 200, login.text)
		self.assertIsNotNone(frappe.db.get_value("User", self.clerk, "last_login"))
		events = events_after(self.start, "User", self.clerk)
		self.assertEqual([e["type"] for e in events if e["type"].startswith("user.log")], ["user.login"])
		self.assertNotIn("sql", vias(events))


class TestLinkCounts(EmissionCase):
	def test_frappes_hourly_link_count_is_no_update_of_the_linked_documents(self):
		# Frappe counts how often each document is picked in a Link field in its idx, and adds the
		# counts up every hour with one raw UPDATE per document (link_count.update_link_count).
		order = new_order("often linked")
		frappe.db.commit()
		start = last_seq()
		frappe.cache.set_value("_link_count", {(ORDER, order.name): 3})
		update_link_count()
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "idx"), order.idx + 3)
		self.assertEqual(events_after(start, ORDER), [])

	def test_a_rows_idx_is_still_its_place_in_the_table(self):
		order = new_order("rows reordered")
		frappe.db.commit()
		start = last_seq()
		frappe.db.sql(f"UPDATE `tab{ORDER_ITEM}` SET idx = 3 - idx WHERE parent = %s", order.name)
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(vias([event]), ["sql"])
		self.assertIn("items", event["data"]["payload"]["changes"])
