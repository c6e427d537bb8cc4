"""Settings saved before *Keep processed marks for (days)* existed get its default (30).

A field with no row in ``tabSingles`` reads as 0, which for this field keeps the marks for ever:
without the patch the retention would stay off on every site that upgrades, until its settings
are saved again.
"""

import frappe

FIELD = "processed_event_retention_days"


def execute() -> None:
	# Settings never saved are left alone: a first row would turn their other fields from
	# defaults into empty values (after_install saves them, with this default, on new sites).
	stored = frappe.db.sql("SELECT `field` FROM `tabSingles` WHERE `doctype` = 'Fabric Settings'", pluck=True)
	if not stored or FIELD in stored:
		return
	default = frappe.get_meta("Fabric Settings").get_field(FIELD).default
	frappe.db.set_single_value("Fabric Settings", FIELD, int(default))
	frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
