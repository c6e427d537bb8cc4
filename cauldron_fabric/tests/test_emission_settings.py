"""Fabric Settings decide what is emitted, in this process and every other, as soon as they commit."""

from __future__ import annotations

import threading

import frappe

from cauldron_fabric.consume.runner import SETTINGS_RECHECK_SECONDS, SettingsWatch
from cauldron_fabric.emit import policy
from cauldron_fabric.emit.policy import current_policy, load_policy
from cauldron_fabric.tests.test_registry_support import refuse_the_next_commit
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	events_after,
	fabric_settings,
	new_order,
	types_of,
)


def write_todo(envelope, payload) -> None:
	"""An in-app handler that writes a ToDo named after the event."""
	frappe.get_doc({"doctype": "ToDo", "description": f"handled {envelope.id}"}).insert()


def set_single_raw(field: str, value) -> None:
	"""Writes a Fabric Settings value as another process would: in SQL, caches left alone."""
	frappe.db.sql("DELETE FROM `tabSingles` WHERE doctype = 'Fabric Settings' AND field = %s", (field,))
	frappe.db.sql(
		"INSERT INTO `tabSingles` (doctype, field, value) VALUES ('Fabric Settings', %s, %s)", (field, value)
	)
	frappe.db.commit()


def policy_in_a_new_request():
	"""Returns the emit policy a new request (another web worker) builds, in a thread of its own."""
	site, found = frappe.local.site, {}

	def request() -> None:
		frappe.init(site=site)
		frappe.connect()
		try:
			found["policy"] = current_policy()
		finally:
			frappe.destroy()

	thread = threading.Thread(target=request)
	thread.start()
	thread.join()
	return found["policy"]


class TestEmissionSettings(EmissionCase):
	"""Deny and allow lists, switches and the broker settings shape what is recorded."""

	def test_deny_list_in_settings_silences_a_doctype(self):
		with fabric_settings(denied_doctypes=[{"document_type": ORDER}]):
			new_order("denied")
			self.assertEqual(events_after(self.start, ORDER), [])
		frappe.db.delete(ORDER, {"title": "denied"})
		frappe.db.commit()

	def test_allow_list_in_settings_keeps_only_its_doctypes(self):
		with fabric_settings(allowed_doctypes=[{"document_type": "ToDo"}]):
			new_order("not allowed")
			todo = frappe.get_doc({"doctype": "ToDo", "description": "allowed"}).insert()
			self.assertEqual({e["data"]["entity"] for e in events_after(self.start)}, {"ToDo"})
			frappe.delete_doc("ToDo", todo.name)
		frappe.db.delete(ORDER, {"title": "not allowed"})
		frappe.db.commit()

	def test_a_rolled_back_settings_change_leaves_no_trace(self):
		frappe.db.commit()
		settings = frappe.get_single("Fabric Settings")
		settings.enabled = 0
		settings.save()
		frappe.db.rollback()
		todo = frappe.get_doc({"doctype": "ToDo", "description": "after a rolled-back change"}).insert()
		self.assertEqual(types_of(events_after(self.start, "ToDo", todo.name)), ["todo.created"])

	def test_a_settings_change_whose_commit_is_refused_leaves_no_trace_in_other_processes(self):
		frappe.db.commit()
		refuse_the_next_commit()
		settings = frappe.get_single("Fabric Settings")
		settings.enabled = 0
		settings.save()
		with self.assertRaises(frappe.ValidationError):
			frappe.db.commit()
		frappe.db.rollback()
		self.assertTrue(policy_in_a_new_request().enabled, "emission stays off in every other process")
		todo = frappe.get_doc({"doctype": "ToDo", "description": "after a refused change"}).insert()
		self.assertEqual(types_of(events_after(self.start, "ToDo", todo.name)), ["todo.created"])

	def test_a_long_running_consumer_follows_settings_changed_elsewhere(self):
		current_policy()
		frappe.db.commit()
		before = frappe.db.get_single_value("Fabric Settings", "event_source")
		# Another process saves the settings: this process's caches are not told.
		set_single_raw("event_source", "frappe://elsewhere")
		self.addCleanup(set_single_raw, "event_source", before)
		self.assertNotEqual(current_policy().source, "frappe://elsewhere")
		watch = SettingsWatch(None, None)
		watch._checked -= SETTINGS_RECHECK_SECONDS
		watch()
		self.assertEqual(current_policy().source, "frappe://elsewhere")

	def test_a_running_delivery_workers_handlers_follow_a_deny_list_saved_since(self):
		from concurrent.futures import ThreadPoolExecutor

		from cauldron_fabric.delivery.handlers import SiteHandler, close_handler_connections
		from cauldron_fabric.emit.recorder import new_envelope

		# One sending thread of a running `fabric deliver`: the engine keeps its threads.
		pool = ThreadPoolExecutor(1)
		self.addCleanup(close_handler_connections)
		self.addCleanup(pool.shutdown)
		handler = SiteHandler(
			frappe.local.site, frappe.local.sites_path, f"{__name__}.write_todo", "Administrator"
		)

		def handle() -> str:
			envelope = new_envelope("probe.handled", "Probe", "1", "created", {})
			pool.submit(handler, envelope, None).result()
			frappe.db.rollback()  # see what the handler committed
			return frappe.db.get_value("ToDo", {"description": f"handled {envelope.id}"})

		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "ToDo", {"description": ("like", "handled %")})
		before = handle()
		self.assertEqual(types_of(events_after(self.start, "ToDo", before)), ["todo.created"])
		with fabric_settings(denied_doctypes=[{"document_type": "ToDo"}]):
			after = handle()
			self.assertEqual(events_after(self.start, "ToDo", after), [])

	def test_disabled_fabric_records_nothing(self):
		with fabric_settings(enabled=0):
			new_order("while disabled")
			self.assertEqual(events_after(self.start), [])
		frappe.db.delete(ORDER, {"title": "while disabled"})
		frappe.db.commit()

	def test_business_events_are_emitted_without_lifecycle_events(self):
		with fabric_settings(emit_document_events=0, emit_business_events=1):
			order = new_order("business only")
			order.submit()
			order.cancel()
			events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), ["business.transaction"] * 2)
		self.assertEqual([e["data"]["action"] for e in events], ["submitted", "cancelled"])
		self.assertEqual(events[0]["data"]["payload"]["grand_total"], 120.5)
		frappe.db.delete(ORDER, {"name": order.name})
		frappe.db.commit()

	def test_without_a_broker_events_are_recorded_not_pending(self):
		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			order = new_order("embedded")
			status = frappe.db.get_value("Event Log", {"entity_id": order.name}, "status")
		self.assertEqual(status, "Recorded")
		frappe.db.delete(ORDER, {"name": order.name})
		frappe.db.commit()

	def test_a_site_without_the_event_log_emits_nothing_until_its_table_is_there(self):
		# Frappe answers table_exists from its cached list of the site's tables: a list from
		# before the app's tables were created is what a site being installed reads.
		tables = frappe.db.get_tables()
		self.addCleanup(frappe.cache.delete_value, "db_tables")
		policy._SITES_WITH_OUTBOX.discard(frappe.local.site)
		frappe.cache.set_value("db_tables", [table for table in tables if table != "tabEvent Log"])
		self.assertFalse(load_policy().enabled)
		frappe.cache.delete_value("db_tables")
		self.assertTrue(load_policy().enabled)
		# Seen once, the table is remembered: the list of tables is not read on every request.
		frappe.cache.set_value("db_tables", [table for table in tables if table != "tabEvent Log"])
		self.assertTrue(load_policy().enabled)
