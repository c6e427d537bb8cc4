"""What the browser tests change on their site, saved before they run and put back after.

The tests restore what they change in their cleanups, but browser_suite.sh stops a hung run with
SIGTERM, which ends Python before any cleanup runs: the site, which the Frappe suite runs on
next, kept the setup wizard marked complete and Fabric Settings pointing at the run's broker.
The script saves these values first and restores them once the run has ended, however it ended,
and removes the tests' desk user. This is the one place that puts them back: the tests change
them and leave them changed. Run through ``bench --site SITE execute``; nothing here needs a browser.
"""

from __future__ import annotations

import json
import os

import frappe
from frappe.utils.password import (
	get_decrypted_password,
	remove_encrypted_password,
	set_encrypted_password,
)

# The desk user the tests log in as: a manager of the fabric, made (and given a new password) by
# the tests, so that they depend on no password of the site's Administrator; removed after.
USER = "fabric.browser@example.com"
# The Fabric Settings fields the browser tests set (fabric_settings, start_broker, the form).
FABRIC_SETTINGS = (
	"bootstrap_servers",
	"rabbitmq_url",
	"rabbitmq_exchange",
	"topic_template",
	"message_timeout_ms",
)
# Those of them that are passwords: kept encrypted apart, the field itself holds asterisks.
PASSWORDS = ("rabbitmq_password",)


def save(path: str) -> None:
	"""Writes the values the browser tests change, as committed, to the JSON file ``path``."""
	state = {
		"System Settings": {
			"setup_complete": frappe.db.get_single_value("System Settings", "setup_complete", cache=False)
		},
		"Fabric Settings": {
			field: frappe.db.get_single_value("Fabric Settings", field, cache=False)
			for field in FABRIC_SETTINGS
		},
		"passwords": {field: _password(field) for field in PASSWORDS},
	}
	with open(path, "w") as file:
		json.dump(state, file)


def restore(path: str) -> None:
	"""Puts back the values ``save`` wrote to ``path``, removes the tests' desk user, and removes
	``path`` (nothing to do without it).

	Written as they were, without a save: the settings' hooks have nothing to tell a process of
	a run that is over, and the caches that would keep the run's values are cleared.
	"""
	if not os.path.exists(path):
		return
	with open(path) as file:
		state = json.load(file)
	for field, password in state.pop("passwords", {}).items():
		_restore_password(field, password)
	for doctype, values in state.items():
		for field, value in values.items():
			frappe.db.set_single_value(doctype, field, value)
		frappe.clear_document_cache(doctype, doctype)
	frappe.db.commit()
	frappe.clear_cache()
	os.remove(path)  # the settings are back, whatever follows
	try:
		remove_desk_user()
	except frappe.ValidationError as exc:
		# Frappe deletes no System Manager while no other one than Administrator exists.
		frappe.db.rollback()
		print(f"browser suite: the desk user {USER} stays on the site: {exc}")


def remove_desk_user() -> None:
	"""Deletes the tests' desk user, and what a killed run left naming it, which would block that.

	A run stopped halfway keeps the approval request or Dead Letter it was on, which names the
	user (as an approver, a decider or a resolver): Frappe deletes no user still named so. (Nor
	while no other System Manager than Administrator exists: its error then says so.)
	"""
	if not frappe.db.exists("User", USER):
		return
	named = frappe.get_all("Approval Request Approver", filters={"approver": USER}, pluck="parent")
	delete_approval_requests(named + frappe.get_all("Approval Request", {"decided_by": USER}, pluck="name"))
	frappe.db.delete("Dead Letter", {"resolved_by": USER})
	for contact in frappe.get_all("Contact", filters={"user": USER}, pluck="name"):
		frappe.delete_doc("Contact", contact, ignore_permissions=True)  # made with the user
	frappe.delete_doc("User", USER, ignore_permissions=True)
	frappe.db.commit()


def delete_approval_requests(names: list[str]) -> None:
	"""Deletes the approval requests ``names`` with their approver rows and ToDos, as a test made them."""
	if not names:
		return
	frappe.db.delete("ToDo", {"reference_type": "Approval Request", "reference_name": ("in", names)})
	frappe.db.delete("Approval Request Approver", {"parent": ("in", names)})
	frappe.db.delete("Approval Request", {"name": ("in", names)})


def _password(field: str) -> str | None:
	return get_decrypted_password("Fabric Settings", "Fabric Settings", field, raise_exception=False)


def _restore_password(field: str, password: str | None) -> None:
	"""Stores ``password`` as a save of the settings would (none: no password at all)."""
	if password:
		set_encrypted_password("Fabric Settings", "Fabric Settings", password, field)
	else:
		remove_encrypted_password("Fabric Settings", "Fabric Settings", field)
	frappe.db.set_single_value("Fabric Settings", field, "*" * len(password) if password else None)
