"""Derived document schemas follow their DocType: fields, customisations and child tables."""

from __future__ import annotations

import json

import frappe
from frappe.custom.doctype.custom_field.custom_field import rename_fieldname
from frappe.custom.doctype.property_setter.property_setter import make_property_setter
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.registry import versions
from cauldron_fabric.registry.doctypes import refresh_doctype_schemas
from cauldron_fabric.tests.test_registry_support import (
	PROBE,
	PROBE_LINE,
	PROBE_TYPE,
	drop_subjects,
	ensure_probe_doctype,
	latest,
	new_probe,
	refuse_the_next_commit,
)
from cauldron_fabric.tests.utils import fabric_settings

CREATED = f"{PROBE_TYPE}.created"
VALID_STATUSES = ("Recorded", "Pending")  # Pending when a broker is configured
UPDATED = f"{PROBE_TYPE}.updated"


def doc_properties(subject: str) -> dict:
	"""Returns the properties of ``doc`` in the latest version of a derived subject."""
	return json.loads(latest(subject).json_schema)["properties"]["doc"]


class TestDoctypeRefresh(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_probe_doctype()

	def setUp(self):
		frappe.set_user("Administrator")
		drop_subjects(like=f"{PROBE_TYPE}.%")
		new_probe("derive")
		frappe.db.commit()
		self.addCleanup(drop_subjects, like=f"{PROBE_TYPE}.%")
		self.assertEqual(latest(CREATED).version, 1)

	def add_custom_field(self, dt: str, fieldname: str, **values) -> str:
		field = frappe.get_doc(
			{"doctype": "Custom Field", "dt": dt, "fieldname": fieldname, "label": fieldname, **values}
		).insert()
		self.addCleanup(self.remove, "Custom Field", field.name)
		return field.name

	def remove(self, doctype: str, name: str) -> None:
		frappe.delete_doc(doctype, name, ignore_permissions=True, force=True)
		frappe.db.commit()

	def test_a_renamed_custom_field_is_renamed_in_the_derived_schema(self):
		suffix = frappe.generate_hash(length=6).lower()
		old, new = f"ref_{suffix}", f"reference_{suffix}"
		field = self.add_custom_field(PROBE, old, fieldtype="Data")
		frappe.db.commit()
		self.assertEqual(latest(CREATED).version, 2)
		rename_fieldname(field, new)  # Desk's "Rename Fieldname" (db_set, then commits)
		with fabric_settings(invalid_event_policy="Reject"):
			# Refused while the schema (closed field list) still names the old field.
			probe = new_probe("renamed", **{new: "R-1"})
			frappe.db.rollback()
		self.assertTrue(probe.name)
		properties = doc_properties(CREATED)["properties"]
		self.assertIn(new, properties)
		self.assertNotIn(old, properties)

	def test_a_custom_field_gives_every_derived_subject_a_compatible_new_version(self):
		self.add_custom_field(PROBE, "customer_ref", fieldtype="Data")
		self.assertEqual(latest(CREATED).version, 1)  # refreshed when the change commits
		frappe.db.commit()
		for subject in (CREATED, UPDATED):
			version = latest(subject)
			self.assertEqual(version.version, 2, subject)
			self.assertIn("customer_ref", doc_properties(subject)["properties"])
			self.assertTrue(json.loads(version.compatibility_report)["compatible"])
		probe = new_probe("with ref", customer_ref="C-1")
		event = frappe.db.get_value(
			"Event Log", {"entity_id": probe.name}, ["status", "data_schema"], as_dict=True
		)
		self.assertIn(event.status, VALID_STATUSES)
		self.assertEqual(event.data_schema, f"urn:cauldron:schema:{CREATED}:2")

	def test_a_breaking_change_is_registered_anyway_with_its_reasons(self):
		setter = make_property_setter(PROBE, "amount", "reqd", 1, "Check", validate_fields_for_doctype=False)
		self.addCleanup(self.remove, "Property Setter", setter.name)
		frappe.db.commit()
		version = latest(CREATED)
		self.assertEqual(version.version, 2)
		self.assertIn("amount", doc_properties(CREATED)["required"])
		report = json.loads(version.compatibility_report)
		self.assertFalse(report["compatible"])
		self.assertIn("#/properties/doc/required/amount", [reason["path"] for reason in report["reasons"]])

	def test_a_child_table_change_refreshes_the_parent(self):
		self.add_custom_field(PROBE_LINE, "unit", fieldtype="Select", options="\nkg\npcs")
		frappe.db.commit()
		lines = doc_properties(CREATED)["properties"]["lines"]["items"]["properties"]
		self.assertEqual(lines["unit"]["x-frappe-options"], ["kg", "pcs"])
		self.assertEqual(latest(CREATED).version, 2)

	def test_many_changes_in_one_transaction_are_one_version(self):
		for fieldname, prop, value in (
			("title", "label", "Heading"),
			("stage", "options", "\nOpen\nDone\nLost"),
		):
			setter = make_property_setter(
				PROBE, fieldname, prop, value, "Data", validate_fields_for_doctype=False
			)
			self.addCleanup(self.remove, "Property Setter", setter.name)
		frappe.db.commit()
		self.assertEqual(latest(CREATED).version, 2)
		properties = doc_properties(CREATED)["properties"]
		self.assertEqual(properties["title"]["title"], "Heading")
		self.assertEqual(properties["stage"]["x-frappe-options"], ["Open", "Done", "Lost"])

	def test_changes_after_a_refused_commit_still_refresh_the_derived_schemas(self):
		refuse_the_next_commit()
		make_property_setter(PROBE, "title", "label", "Refused", "Data", validate_fields_for_doctype=False)
		with self.assertRaises(frappe.ValidationError):
			frappe.db.commit()
		frappe.db.rollback()
		setter = make_property_setter(
			PROBE, "title", "label", "Heading", "Data", validate_fields_for_doctype=False
		)
		self.addCleanup(self.remove, "Property Setter", setter.name)
		frappe.db.commit()
		self.assertEqual(latest(CREATED).version, 2)
		self.assertEqual(doc_properties(CREATED)["properties"]["title"]["title"], "Heading")

	def test_an_unrelated_change_registers_nothing(self):
		setter = make_property_setter(PROBE, None, "sort_order", "ASC", "Data", for_doctype=True)
		self.addCleanup(self.remove, "Property Setter", setter.name)
		frappe.db.commit()
		self.assertEqual(latest(CREATED).version, 1)
		self.assertEqual(refresh_doctype_schemas(PROBE), [])
		self.assertEqual(latest(CREATED).version, 1)

	def test_a_reverted_change_becomes_the_latest_again(self):
		name = self.add_custom_field(PROBE, "temporary", fieldtype="Data", reqd=1)
		frappe.db.commit()
		self.assertEqual(latest(CREATED).version, 2)
		frappe.delete_doc("Custom Field", name)  # as Desk deletes it: links checked, meta reloaded
		frappe.db.commit()
		self.assertEqual(latest(CREATED).version, 3)
		self.assertEqual(latest(CREATED).fingerprint, versions.version_doc(CREATED, 1).fingerprint)
