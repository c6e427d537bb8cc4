"""Settings saved before *Publish API calls per user and minute* existed get its default (600).

A field with no row in ``tabSingles`` reads as 0, which turns the limit off: without the patch
every site that upgrades would publish unlimited until its settings are saved again.
"""

import frappe

FIELD = "publish_rate_limit"


def execute() -> None:
	# Settings never saved are left alone: a first row would turn their other fields from
	# defaults into empty values (after_install saves them, with this default, on new sites).
	stored = frappe.db.sql("SELECT `field` FROM `tabSingles` WHERE `doctype` = 'Fabric Settings'", pluck=True)
	if not stored or FIELD in stored:
		return
	default = frappe.get_meta("Fabric Settings").get_field(FIELD).default
	frappe.db.set_single_value("Fabric Settings", FIELD, int(default))
	frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
