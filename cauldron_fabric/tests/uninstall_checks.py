"""Checks of a real ``bench uninstall-app cauldron_fabric`` and ``install-app`` on a throwaway
site, run by tests/uninstall_suite.sh, each in a process of its own, from the bench's sites
folder::

    ../env/bin/python -m cauldron_fabric.tests.uninstall_checks SITE CHECK

A check that finds things otherwise raises, and the process exits non-zero. (``bench execute``
refuses a function of an app the site does not have.)

The app's code stays on the bench while it is uninstalled from the site, and bench imports its
``commands`` module in every command's process, which wraps Frappe's writes there (see
emit/watch.py). Each check's process imports it the same way: the site without the app must
work as before with those wraps in place.
"""

from __future__ import annotations

import sys

import frappe
from frappe.database.database import Database

APP = "cauldron_fabric"
APP_DOCTYPES = ("Event Log", "Fabric Settings", "Dead Letter", "Event Subscription", "Event Schema")


def installed_and_recording() -> None:
	"""The app is installed and a saved document is its event in the Event Log."""
	_check(APP in frappe.get_installed_apps(), f"{APP} is not installed on {frappe.local.site}")
	name = _saved_todo("before the uninstall")
	_check_recorded(name)
	print(f"installed: todo.created recorded for ToDo {name}")


def gone_and_site_still_works() -> None:
	"""The app, its DocTypes and their tables are gone, and the site's writes (a save, a db_set,
	a set_value, a raw UPDATE and a delete) work with the app's code still on the bench."""
	_check(APP not in frappe.get_installed_apps(), f"{APP} is still installed on {frappe.local.site}")
	_check(getattr(Database.sql, "fabric_watched", False), "the fabric's wraps are not in place")
	for doctype in APP_DOCTYPES:
		_check(not frappe.db.exists("DocType", doctype), f"DocType {doctype} is still there")
		_check(not frappe.db.table_exists(doctype), f"table tab{doctype} is still there")
	name = _saved_todo("after the uninstall")
	todo = frappe.get_doc("ToDo", name)
	todo.db_set("description", "db_set after the uninstall")
	frappe.db.set_value("ToDo", name, "priority", "High")
	frappe.db.sql("UPDATE `tabToDo` SET status = 'Closed' WHERE name = %s", name)
	frappe.db.commit()
	stored = frappe.db.get_value("ToDo", name, ["description", "priority", "status"])
	_check(stored == ("db_set after the uninstall", "High", "Closed"), f"ToDo {name} reads {stored}")
	frappe.delete_doc("ToDo", name)
	frappe.db.commit()
	_check(not frappe.db.exists("ToDo", name), f"ToDo {name} was not deleted")
	print(
		f"uninstalled: no {', '.join(APP_DOCTYPES)}; a save, db_set, set_value, raw UPDATE and delete worked"
	)


def reinstalled_and_recording() -> None:
	"""Installed again, the app records as it did before."""
	installed_and_recording()


def _saved_todo(description: str) -> str:
	todo = frappe.get_doc({"doctype": "ToDo", "description": description}).insert(ignore_permissions=True)
	frappe.db.commit()
	return todo.name


def _check_recorded(name: str) -> None:
	types = frappe.db.sql_list(
		"SELECT event_type FROM `tabEvent Log` WHERE entity = 'ToDo' AND entity_id = %s ORDER BY name",
		name,
	)
	_check(types == ["todo.created"], f"the Event Log holds {types} for ToDo {name}, not ['todo.created']")


def _check(condition: bool, problem: str) -> None:
	if not condition:
		raise AssertionError(f"uninstall suite: {problem}")


CHECKS = {
	check.__name__: check
	for check in (installed_and_recording, gone_and_site_still_works, reinstalled_and_recording)
}


def main() -> None:
	site, check = sys.argv[1:3]
	frappe.init(site=site, sites_path=".")
	frappe.connect()
	try:
		import cauldron_fabric.commands  # noqa: F401  (as bench does: the wraps, see the docstring)

		frappe.set_user("Administrator")
		CHECKS[check]()
	finally:
		frappe.destroy()


if __name__ == "__main__":
	main()
