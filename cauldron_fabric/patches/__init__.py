"""Patches; shared steps live here."""

import frappe

from cauldron_fabric.core.markup import plain


def default_for_a_new_settings_field(fieldname: str) -> None:
	"""Stores a new Fabric Settings field's default on sites whose settings were saved before it existed.

	Such a field has no row in ``tabSingles`` and reads as 0 (or empty), which for a number of
	days or a limit means "off" until the settings are saved again. Settings never saved are left alone:
	a first row would turn their other fields from defaults into empty values (after_install
	saves them, with every default, on new sites).
	"""
	stored = frappe.db.sql("SELECT `field` FROM `tabSingles` WHERE `doctype` = 'Fabric Settings'", pluck=True)
	if not stored or fieldname in stored:
		return
	field = frappe.get_meta("Fabric Settings").get_field(fieldname)
	default = field.default if field.fieldtype == "Select" else int(field.default)
	frappe.db.set_single_value("Fabric Settings", fieldname, default)
	frappe.clear_document_cache("Fabric Settings", "Fabric Settings")


def keep_markup_as_brackets(table: str, column: str, condition: str = "1 = 1") -> None:
	"""Rewrites each ``<`` and ``>`` in ``column`` of the rows of ``table`` that ``condition`` picks.

	For texts from outside stored, before they were kept plain, in a column Desk renders as
	HTML: each bracket becomes the character plain() writes, so the text reads the same and a
	second run finds nothing to change; ``modified`` is left as it was. ``table``, ``column`` and
	``condition`` are the patch's own SQL, never input.
	"""
	frappe.db.sql(
		f"""UPDATE `{table}` SET `{column}` = REPLACE(REPLACE(`{column}`, '<', %s), '>', %s)
		WHERE ({condition}) AND (`{column}` LIKE '%%<%%' OR `{column}` LIKE '%%>%%')""",
		(plain("<"), plain(">")),
	)
