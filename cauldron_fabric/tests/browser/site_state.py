"""What the browser tests change on their site, saved before they run and put back after.

The tests restore what they change in their cleanups, but browser_suite.sh stops a hung run with
SIGTERM, which ends Python before any cleanup runs: the site, which the Frappe suite runs on
next, kept the setup wizard marked complete and Fabric Settings pointing at the run's broker.
The script saves these values first and restores them once the run has ended, however it ended.
Run through ``bench --site SITE execute``; nothing here needs a browser.
"""

from __future__ import annotations

import json
import os

import frappe

# The Fabric Settings fields the browser tests set (fabric_settings, start_broker, the form).
FABRIC_SETTINGS = ("bootstrap_servers", "rabbitmq_url", "topic_template", "message_timeout_ms")


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
	}
	with open(path, "w") as file:
		json.dump(state, file)


def restore(path: str) -> None:
	"""Puts back the values ``save`` wrote to ``path`` and removes it (nothing to do without it).

	Written as they were, without a save: the settings' hooks have nothing to tell a process of
	a run that is over, and the caches that would keep the run's values are cleared.
	"""
	if not os.path.exists(path):
		return
	with open(path) as file:
		state = json.load(file)
	for doctype, values in state.items():
		for field, value in values.items():
			frappe.db.set_single_value(doctype, field, value)
		frappe.clear_document_cache(doctype, doctype)
	frappe.db.commit()
	frappe.clear_cache()
	os.remove(path)
