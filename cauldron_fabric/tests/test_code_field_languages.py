"""Every Code field of the app's DocTypes names a language Desk's code editor knows, or none.

Desk's Code control warns in the browser console for any other: Fabric Settings' TLS CA
certificate field, set to "PEM", logged "Invalid language option" on every opening of the form.
"""

from __future__ import annotations

import json
from pathlib import Path

from frappe.tests.utils import FrappeTestCase

import cauldron_fabric

# The languages of Frappe v15's Code control (frappe/public/js/frappe/form/controls/code.js).
LANGUAGES = {
	"Javascript",
	"JS",
	"Python",
	"Py",
	"PythonExpression",
	"HTML",
	"CSS",
	"Markdown",
	"SCSS",
	"JSON",
	"Golang",
	"Go",
	"Jinja",
}
DOCTYPES = Path(cauldron_fabric.__file__).parent / "cauldron_fabric" / "doctype"


class TestCodeFieldLanguages(FrappeTestCase):
	def test_each_code_field_names_a_known_language_or_none(self):
		checked = 0
		for path in sorted(DOCTYPES.glob("*/*.json")):
			for field in json.loads(path.read_text()).get("fields", []):
				if field["fieldtype"] != "Code":
					continue
				checked += 1
				if field.get("options"):
					with self.subTest(doctype=path.stem, field=field["fieldname"]):
						self.assertIn(field["options"], LANGUAGES)
		self.assertGreater(checked, 0)
