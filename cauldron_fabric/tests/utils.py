"""Helpers of the Frappe suite: a submittable test DocType, reading the Event Log, settings."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from typing import Any

import frappe
from frappe.tests.utils import FrappeTestCase, patch_hooks

from cauldron_fabric.services import all_sites
from cauldron_fabric.testing.kafka_broker import KafkaBroker

ORDER = "Fabric Test Order"
ORDER_ITEM = "Fabric Test Order Item"


# Text that SQL helpers like to rewrite or misread: IFNULL( calls, %-placeholders, quotes.
SQL_LOOKALIKE_TEXT = "IFNULL(a, 0) or ifnull(b,1); 100% %s %(x)s it's \\' \"q\" 漢字"


def order_hooks(module: str, **handlers: str):
	"""Adds ``doc_events`` of the test DocType (event → function of ``module``) to the app's."""
	return doctype_hooks(ORDER, module, **handlers)


@contextmanager
def doctype_hooks(doctype: str, module: str, **handlers: str):
	"""Adds ``doc_events`` of ``doctype`` (event → function of ``module``) to the app's."""
	doc_events = dict(frappe.get_hooks("doc_events"))
	doc_events[doctype] = {event: [f"{module}.{handler}"] for event, handler in handlers.items()}
	with patch_hooks({"doc_events": doc_events}):
		_forget_doc_events()
		try:
			yield
		finally:
			_forget_doc_events()


def _forget_doc_events() -> None:
	# Frappe expands doc_events once per request and keeps them in frappe.local.
	if hasattr(frappe.local, "doc_events_hooks"):
		del frappe.local.doc_events_hooks


ITEM_FIELDS = [
	{"fieldname": "item", "fieldtype": "Data", "label": "Item"},
	{"fieldname": "qty", "fieldtype": "Int", "label": "Qty"},
]


def ensure_custom_doctype(name: str, fields: list[dict], **properties) -> None:
	"""Creates a custom DocType in module Custom once per site (System Manager may do anything)."""
	if frappe.db.exists("DocType", name):
		return
	rights = {"read": 1, "write": 1, "create": 1, "delete": 1}
	if properties.get("is_submittable"):
		rights.update(submit=1, cancel=1, amend=1)
	permissions = [] if properties.get("istable") else [{"role": "System Manager", **rights}]
	doc = {"doctype": "DocType", "name": name, "module": "Custom", "custom": 1, "fields": fields}
	frappe.get_doc({**doc, "permissions": permissions, **properties}).insert(ignore_permissions=True)


def ensure_test_doctypes() -> None:
	"""Creates a submittable, renamable custom DocType with a child table (once per site)."""
	ensure_custom_doctype(ORDER_ITEM, ITEM_FIELDS, istable=1)
	order_fields = [
		{"fieldname": "title", "fieldtype": "Data", "label": "Title"},
		{"fieldname": "company", "fieldtype": "Data", "label": "Company"},
		{"fieldname": "grand_total", "fieldtype": "Currency", "label": "Grand Total"},
		{"fieldname": "note", "fieldtype": "Small Text", "label": "Note", "allow_on_submit": 1},
		{"fieldname": "items", "fieldtype": "Table", "label": "Items", "options": ORDER_ITEM},
	]
	ensure_custom_doctype(ORDER, order_fields, is_submittable=1, allow_rename=1, autoname="hash")
	frappe.db.commit()


class EmissionCase(FrappeTestCase):
	"""The test DocTypes exist; each test runs as Administrator and reads events after its start."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_test_doctypes()

	def setUp(self):
		frappe.set_user("Administrator")
		self.start = last_seq()


def new_order(title: str = "order", **values) -> Any:
	"""Inserts a draft Fabric Test Order with two item rows."""
	return frappe.get_doc(
		{
			"doctype": ORDER,
			"title": title,
			"company": "Cauldron Ltd",
			"grand_total": 120.5,
			"items": [{"item": "cauldron", "qty": 1}, {"item": "ladle", "qty": 3}],
			**values,
		}
	).insert()


def save_with_hooks(module: str, title: str, new_title: str = "saved", **hooks) -> tuple[Any, list]:
	"""Inserts an order titled ``title`` and commits, then saves it as ``new_title`` with the
	controller ``hooks`` (names of functions in ``module``) and commits: returns the order and
	the events from that save on."""
	order = new_order(title)
	frappe.db.commit()
	start = last_seq()
	with order_hooks(module, **hooks):
		order.title = new_title
		order.save()
	frappe.db.commit()
	return order, events_after(start, ORDER)


def order_import(rows_csv: str) -> Any:
	"""Returns a new Data Import that inserts Fabric Test Orders from ``rows_csv`` (not started)."""
	csv = frappe.get_doc(
		{
			"doctype": "File",
			"file_name": f"fabric_import_{frappe.generate_hash(length=6)}.csv",
			"is_private": 1,
			"content": rows_csv,
		}
	).insert()
	return frappe.get_doc(
		{
			"doctype": "Data Import",
			"reference_doctype": ORDER,
			"import_type": "Insert New Records",
			"import_file": csv.file_url,
		}
	).insert()


def last_seq() -> int:
	"""Returns the newest Event Log sequence number (0 when empty)."""
	return int(frappe.db.sql("SELECT COALESCE(MAX(name), 0) FROM `tabEvent Log`")[0][0])


def emitted_heartbeat() -> dict[str, Any]:
	"""Emits a ``system.status`` heartbeat and returns its Event Log row (status, last_error,
	envelope), rolled back so that the test's own rows stay as they were."""
	from cauldron_fabric.emit.scheduled import emit_heartbeat

	start = last_seq()
	emit_heartbeat()
	(row,) = frappe.db.sql(
		"SELECT status, last_error, envelope FROM `tabEvent Log` WHERE name > %s AND event_type = %s",
		(start, "system.status"),
		as_dict=True,
	)
	frappe.db.rollback()
	return row


def events_after(seq: int, entity: str | None = None, entity_id: str | None = None) -> list[dict[str, Any]]:
	"""Returns the envelopes recorded after ``seq``, oldest first, optionally for one entity."""
	conditions, values = ["name > %s"], [seq]
	if entity:
		conditions.append("entity = %s")
		values.append(entity)
	if entity_id:
		conditions.append("entity_id = %s")
		values.append(entity_id)
	rows = frappe.db.sql(
		f"SELECT envelope FROM `tabEvent Log` WHERE {' AND '.join(conditions)} ORDER BY name", values
	)
	return [json.loads(row[0]) for row in rows]


def _plain(value):
	if isinstance(value, list):
		return [{"document_type": row.document_type} for row in value]
	return value


def listed_patches() -> list[str]:
	"""Returns the patches ``bench migrate`` runs: the dotted paths in the app's patches.txt."""
	with open(frappe.get_app_path("cauldron_fabric", "patches.txt")) as listed:
		return listed.read().split()


def payload(envelope: dict[str, Any]) -> dict[str, Any]:
	"""Returns an event's ``data.payload``."""
	return envelope["data"]["payload"]


def types_of(envelopes: list[dict[str, Any]]) -> list[str]:
	"""Returns the event types in order."""
	return [envelope["type"] for envelope in envelopes]


@contextmanager
def fabric_settings(**values):
	"""Saves Fabric Settings with ``values`` (committed) and restores the previous ones after."""
	settings = frappe.get_single("Fabric Settings")
	previous = {field: _plain(settings.get(field)) for field in values}
	for field in values:
		# The document holds "*****" for a Password field, which a save would keep: the stored one.
		if settings.meta.get_field(field).fieldtype == "Password":
			previous[field] = settings.get_password(field, raise_exception=False)
	settings.update(values)
	settings.save(ignore_permissions=True)
	frappe.db.commit()
	try:
		yield settings
	finally:
		settings = frappe.get_single("Fabric Settings")
		settings.update(previous)
		settings.save(ignore_permissions=True)
		frappe.db.commit()


def bench_command(*args: str) -> list[str]:
	"""Returns the command line of ``bench --site SITE *args`` for this site, as bench runs it."""
	return all_sites.bench_command(frappe.local.site, *args)


def start_fabric_command(*args: str, **popen: Any) -> subprocess.Popen:
	"""Starts ``bench --site SITE fabric *args`` from the sites folder; stderr piped as text by default."""
	options = {"stderr": subprocess.PIPE, "text": True, **popen}
	return subprocess.Popen(
		bench_command("fabric", *args), cwd=os.path.abspath(frappe.get_site_path("..")), **options
	)


def assert_usage_error(test: FrappeTestCase, *args: str) -> str:
	"""Runs ``bench --site SITE fabric *args``; checks click refused it (exit 2), without a traceback."""
	process = start_fabric_command(*args)
	_, stderr = process.communicate(timeout=60)
	test.assertEqual(process.returncode, 2, stderr)
	test.assertNotIn("Traceback", stderr)
	return stderr


def start_broker(test_class, prefix: str = "fabricconsume", **settings: Any) -> None:
	"""Starts a broker for a test class and points Fabric Settings at it until the class ends.

	Topics get ``test_class.prefix`` (``prefix`` plus a random part) as their domain prefix.
	"""
	test_class.broker = KafkaBroker().start()
	test_class.addClassCleanup(test_class.broker.stop)
	test_class.prefix = prefix + frappe.generate_hash(length=6)
	context = fabric_settings(
		bootstrap_servers=test_class.broker.bootstrap,
		topic_template=test_class.prefix + ".{domain}",
		message_timeout_ms=3000,
		**settings,
	)
	context.__enter__()
	test_class.addClassCleanup(context.__exit__, None, None, None)


def lose_connection_then_save_todo(description: str) -> threading.Thread:
	"""Starts a thread that kills this thread's database connection after 2 s (as a failover or
	wait_timeout would), then after 2 s more commits a ToDo from a connection of its own."""
	from cauldron_fabric.services.relay import site_db_connector

	mine = frappe.db.sql("SELECT CONNECTION_ID()")[0][0]
	connect, site, sites_path = site_db_connector(), frappe.local.site, frappe.local.sites_path

	def run() -> None:
		time.sleep(2)
		killer = connect()
		with killer.cursor() as cursor:
			cursor.execute(f"KILL {int(mine)}")
		killer.close()
		time.sleep(2)
		frappe.init(site=site, sites_path=sites_path)  # another request, on this thread
		frappe.connect()
		try:
			frappe.get_doc({"doctype": "ToDo", "description": description}).insert()
			frappe.db.commit()
		finally:
			frappe.destroy()

	thread = threading.Thread(target=run)
	thread.start()
	return thread
