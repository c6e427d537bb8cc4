"""Writes without document hooks made in ``bench execute``, ``bench console`` and ``bench
run-patch`` are events from the process's first write.

Admins and support staff fix data that way. Frappe runs none of the app's before_request,
before_job or before_migrate hooks in those processes, and their first write may come before
any document hook of the fabric has run. Each test runs the real command as ``bench`` runs it
(``python -m frappe.utils.bench_helper frappe --site SITE ...``, from the sites folder) in a
process of its own, then reads what it committed.
"""

from __future__ import annotations

import json
import os
import subprocess

import frappe

from cauldron_fabric.emit import sql_doctypes
from cauldron_fabric.emit.policy import clear_policy
from cauldron_fabric.tests.utils import (
	ORDER,
	EmissionCase,
	bench_command,
	events_after,
	last_seq,
	new_order,
	payload,
)

UPDATED = "fabric_test_order.updated"

# What a process has wrapped of Frappe's methods, asked in `bench execute` of an expression (which
# Frappe evaluates when the argument names no function): the command's own code, nothing else.
WATCHED = (
	"(lambda database=__import__('frappe.database.database', fromlist=['Database']).Database,"
	" document=__import__('frappe.model.base_document', fromlist=['BaseDocument']).BaseDocument:"
	" {name: getattr(method, 'fabric_watched', False) for name, method in ("
	"('savepoint', database.savepoint), ('rollback', database.rollback),"
	" ('set_value', database.set_value), ('set_single_value', database.set_single_value),"
	" ('db_update', document.db_update), ('sql', database.sql))})"
)


def run_bench(case: EmissionCase, *args: str, stdin: str | None = None) -> str:
	"""Runs ``bench --site SITE *args`` (``stdin`` as its input), checks it succeeded and returns
	its output; what it committed is visible afterwards."""
	frappe.db.commit()
	done = subprocess.run(
		bench_command(*args),
		cwd=os.path.abspath(frappe.get_site_path("..")),
		input=stdin,
		capture_output=True,
		text=True,
		timeout=180,
	)
	case.assertEqual(done.returncode, 0, done.stdout + done.stderr)
	case.assertNotIn("Traceback", done.stderr)
	frappe.db.rollback()  # see what the process committed
	return done.stdout


class TestWritesInBenchCommands(EmissionCase):
	def committed_order(self, title: str):
		order = new_order(title)
		frappe.db.commit()
		self.addCleanup(_delete_order, order.name)
		return order

	def test_a_set_value_in_bench_execute_is_an_event(self):
		order = self.committed_order("before bench execute")
		start = last_seq()
		# The command an admin types; Frappe commits after the call.
		arguments = json.dumps([ORDER, order.name, "title", "fixed in bench execute"])
		run_bench(self, "execute", "frappe.db.set_value", "--args", arguments)
		(event,) = events_after(start, ORDER, order.name)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["via"], "set_value")
		self.assertEqual(
			payload(event)["changes"],
			{"title": {"old": "before bench execute", "new": "fixed in bench execute"}},
		)

	def test_a_set_value_in_bench_console_is_an_event(self):
		order = self.committed_order("before bench console")
		start = last_seq()
		typed = (
			f"frappe.db.set_value({ORDER!r}, {order.name!r}, 'title', 'fixed in bench console')\n"
			"frappe.db.commit()\n"
		)
		run_bench(self, "console", stdin=typed)
		(event,) = events_after(start, ORDER, order.name)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["via"], "set_value")
		self.assertEqual(
			payload(event)["changes"],
			{"title": {"old": "before bench console", "new": "fixed in bench console"}},
		)

	def test_a_raw_update_in_bench_console_is_an_event(self):
		order = self.committed_order("before a raw update")
		start = last_seq()
		typed = (
			f"frappe.db.sql('UPDATE `tab{ORDER}` SET title = %s WHERE name = %s', ('fixed raw', {order.name!r}))\n"
			"frappe.db.commit()\n"
		)
		run_bench(self, "console", stdin=typed)
		(event,) = events_after(start, ORDER, order.name)
		self.assertEqual((event["type"], payload(event)["via"]), (UPDATED, "sql"))
		self.assertEqual(
			payload(event)["changes"], {"title": {"old": "before a raw update", "new": "fixed raw"}}
		)

	def test_a_set_value_in_a_patch_under_bench_run_patch_is_an_event(self):
		order = self.committed_order("before bench run-patch")
		start = last_seq()
		patch = f"execute:frappe.db.set_value({ORDER!r}, {order.name!r}, 'title', 'fixed by a patch')"
		self.addCleanup(_delete_patch_log, patch)
		run_bench(self, "run-patch", patch)
		(event,) = events_after(start, ORDER, order.name)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["via"], "set_value")
		self.assertEqual(
			payload(event)["changes"], {"title": {"old": "before bench run-patch", "new": "fixed by a patch"}}
		)

	def test_bench_execute_follows_savepoints_and_writes_before_its_first_call(self):
		watched = json.loads(run_bench(self, "execute", WATCHED).strip().splitlines()[-1])
		self.assertEqual(watched, dict.fromkeys(watched, True))
		self.assertEqual(len(watched), 6)


def _delete_order(name: str) -> None:
	frappe.db.rollback()
	frappe.delete_doc(ORDER, name, force=True)
	frappe.db.commit()


def _delete_patch_log(patch: str) -> None:
	frappe.db.rollback()
	frappe.db.delete("Patch Log", {"patch": patch})
	frappe.db.commit()


class TestDocTypesOtherProcessesCreate(EmissionCase):
	def test_a_table_this_process_found_no_doctype_is_watched_once_another_created_it(self):
		# A worker runs on while a migrate in another process creates a DocType whose table the
		# worker had already met as no DocType's: its raw writes there are events from then on.
		name = f"Fabric Elsewhere {frappe.generate_hash(length=6)}"
		with self.assertRaises(Exception):
			frappe.db.sql(f"UPDATE `tab{name}` SET a = 'early' WHERE name = 'x'")
		self.assertIn(name, sql_doctypes._not_doctypes[frappe.local.site][1])
		run_bench(
			self,
			"execute",
			"cauldron_fabric.tests.test_emission_sql_edges.insert_custom_doctype",
			"--args",
			json.dumps([name]),
		)
		try:
			clear_policy()  # the worker's next job
			doc = frappe.get_doc({"doctype": name, "a": "before"}).insert()
			start = last_seq()
			frappe.db.sql(f"UPDATE `tab{name}` SET a = 'after' WHERE name = %s", doc.name)
			(event,) = events_after(start, name)
			self.assertEqual(payload(event)["changes"], {"a": {"old": "before", "new": "after"}})
			self.assertEqual(payload(event)["via"], "sql")
		finally:
			frappe.db.rollback()
			frappe.delete_doc("DocType", name, force=True)
			frappe.db.commit()
