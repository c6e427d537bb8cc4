"""The schema registry on a real site: the installed catalog, versions, compatibility, immutability."""

from __future__ import annotations

import hashlib
import json

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.core.schema import load_catalog, schema_fingerprint
from cauldron_fabric.core.schema.identity import canonical_json
from cauldron_fabric.registry import cache, subjects, versions
from cauldron_fabric.registry.catalog import install_catalog
from cauldron_fabric.registry.errors import (
	IncompatibleSchemaError,
	InvalidSchemaError,
	OperationNotPermitted,
	VersionNotFound,
)
from cauldron_fabric.registry.parsing import pretty
from cauldron_fabric.tests.test_registry_support import (
	ORDER_V1,
	SCHEMA,
	SUBJECT,
	drop_subjects,
	latest,
	refuse_the_next_commit,
	unique_subject,
	with_property,
	without_property,
)


class TestCatalog(FrappeTestCase):
	def test_every_catalog_event_is_installed_as_a_version_with_its_owner_and_examples(self):
		catalog = load_catalog()
		self.assertGreaterEqual(len(catalog), 40)
		for entry in catalog:
			row = frappe.db.get_value(
				SCHEMA,
				{"subject": entry.type, "fingerprint": schema_fingerprint(entry.schema)},
				["version", "owner_team", "examples", "data_schema"],
				as_dict=True,
			)
			self.assertIsNotNone(row, entry.type)
			self.assertEqual(row.owner_team, entry.owner_title)
			self.assertEqual(json.loads(row.examples), list(entry.examples))
			self.assertEqual(row.data_schema, f"urn:cauldron:schema:{entry.type}:{row.version}")
			self.assertEqual(frappe.db.get_value(SUBJECT, entry.type, "origin"), "Catalog")

	def test_installing_again_registers_nothing(self):
		before = frappe.db.count(SCHEMA)
		counts = install_catalog()
		self.assertEqual(counts["registered"], 0)
		self.assertEqual(counts["unchanged"], len(load_catalog()))
		self.assertEqual(frappe.db.count(SCHEMA), before)


class TestRegistryIds(FrappeTestCase):
	"""A registry ``$id`` names the version a schema is registered as, whatever it was sent with."""

	def setUp(self):
		frappe.set_user("Administrator")
		self.subject = unique_subject()
		self.v1 = {"$id": self.uri(1), **ORDER_V1}
		versions.register_schema(self.subject, self.v1)
		self.v2 = with_property(self.v1, "channel", {"type": "string"})  # still says version 1

	def uri(self, version: int) -> str:
		return f"urn:cauldron:schema:{self.subject}:{version}"

	def stored(self, version: int) -> dict:
		return frappe.db.get_value(
			SCHEMA,
			{"subject": self.subject, "version": version},
			["name", "json_schema", "fingerprint"],
			as_dict=True,
		)

	def test_a_schema_written_as_version_one_and_registered_second_says_version_two(self):
		doc, created = versions.register_schema(self.subject, self.v2)
		self.assertTrue(created)
		self.assertEqual((doc.version, doc.data_schema), (2, self.uri(2)))
		self.assertEqual(json.loads(self.stored(2).json_schema)["$id"], self.uri(2))
		self.assertEqual(json.loads(self.stored(1).json_schema)["$id"], self.uri(1))

	def test_the_same_schema_under_another_versions_id_is_the_version_registered(self):
		versions.register_schema(self.subject, self.v2)
		again, created = versions.register_schema(self.subject, {**self.v2, "$id": self.uri(7)})
		self.assertFalse(created)
		self.assertEqual(again.version, 2)
		self.assertEqual(len(versions.versions_of(self.subject)), 2)

	def test_the_upgrade_patch_renames_stored_ids_and_refreshes_fingerprints(self):
		from cauldron_fabric.patches import schema_ids_name_their_own_version

		versions.register_schema(self.subject, self.v2)
		# As a version 2 was stored before: the $id it was sent with, fingerprinted with it.
		old_fingerprint = hashlib.sha256(canonical_json(self.v2).encode()).hexdigest()
		frappe.db.set_value(
			SCHEMA,
			self.stored(2).name,
			{"json_schema": pretty(self.v2), "fingerprint": old_fingerprint},
		)
		schema_ids_name_their_own_version.execute()
		row = self.stored(2)
		self.assertEqual(json.loads(row.json_schema)["$id"], self.uri(2))
		self.assertEqual(row.fingerprint, schema_fingerprint(self.v2))
		_, created = versions.register_schema(self.subject, self.v2)
		self.assertFalse(created, "the patched version must be found again, not registered a third time")


class TestRegistration(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")
		self.subject = unique_subject()
		self.first, created = versions.register_schema(self.subject, ORDER_V1, owner_team="Order Team")
		self.assertTrue(created)

	def test_the_first_version_is_numbered_one_and_referenced_by_its_data_schema(self):
		self.assertEqual(self.first.version, 1)
		self.assertEqual(self.first.data_schema, f"urn:cauldron:schema:{self.subject}:1")
		self.assertEqual(self.first.title, f"{self.subject} v1")
		self.assertEqual(frappe.db.get_value(SUBJECT, self.subject, "latest_version"), 1)

	def test_a_breaking_change_under_backward_is_refused_with_every_reason(self):
		self.assertEqual(subjects.subject_mode(self.subject).value, "BACKWARD")
		breaking = with_property(without_property(ORDER_V1, "note"), "customer", {"type": "string"}, True)
		breaking["properties"]["qty"] = {"type": "string"}
		with self.assertRaises(IncompatibleSchemaError) as refused:
			versions.register_schema(self.subject, breaking)
		message = str(refused.exception)
		for path in ("#/properties/note", "#/properties/customer", "#/properties/qty"):
			self.assertIn(path, message)
		rules = {reason["rule"] for reason in refused.exception.details["reasons"]}
		self.assertEqual(len(refused.exception.details["reasons"]), 3, rules)
		self.assertEqual(refused.exception.http_status_code, 409)
		self.assertEqual(versions.versions_of(self.subject)[-1]["version"], 1)

	def test_the_same_refusal_happens_when_an_admin_saves_the_version_in_desk(self):
		breaking = with_property(ORDER_V1, "customer", {"type": "string"}, required=True)
		doc = frappe.get_doc(
			{"doctype": SCHEMA, "subject": self.subject, "json_schema": json.dumps(breaking)}
		)
		self.assertRaisesRegex(IncompatibleSchemaError, "REQUIRED|required", doc.insert)
		self.assertEqual(frappe.db.count(SCHEMA, {"subject": self.subject}), 1)

	def test_a_compatible_change_gets_the_next_version(self):
		grown = with_property(ORDER_V1, "channel", {"type": "string"})
		second, created = versions.register_schema(self.subject, grown)
		self.assertTrue(created)
		self.assertEqual(second.version, 2)
		self.assertEqual(second.owner_team, "Order Team")  # carried forward
		report = json.loads(second.compatibility_report)
		self.assertTrue(report["compatible"])
		self.assertEqual(report["checkedVersions"], [1])
		self.assertEqual(frappe.db.get_value(SUBJECT, self.subject, "latest_version"), 2)

	def test_a_registration_after_a_refused_commit_is_announced_to_every_process(self):
		frappe.db.commit()
		self.addCleanup(drop_subjects, self.subject)
		stamp = cache._read_stamp()
		refuse_the_next_commit()
		versions.register_schema(self.subject, with_property(ORDER_V1, "refused", {"type": "string"}))
		with self.assertRaises(frappe.ValidationError):
			frappe.db.commit()
		frappe.db.rollback()
		self.assertEqual(cache._read_stamp(), stamp)
		versions.register_schema(self.subject, with_property(ORDER_V1, "channel", {"type": "string"}))
		frappe.db.commit()
		self.assertNotEqual(cache._read_stamp(), stamp, "other processes keep the old schemas")

	def test_a_refused_commit_lets_other_processes_register_the_subject(self):
		frappe.db.commit()
		self.addCleanup(drop_subjects, self.subject)
		refuse_the_next_commit()
		versions.register_schema(self.subject, with_property(ORDER_V1, "refused", {"type": "string"}))
		with self.assertRaises(frappe.ValidationError):
			frappe.db.commit()
		frappe.db.rollback()
		lock = f"fabric_subject:{frappe.local.site}:{self.subject}"[:64]
		holder = frappe.db.sql("SELECT IS_USED_LOCK(%s)", (lock,))[0][0]
		self.assertIsNone(holder, "the subject stays locked until this connection closes")

	def test_registering_a_known_schema_again_returns_its_version(self):
		again, created = versions.register_schema(self.subject, json.dumps(ORDER_V1))
		self.assertFalse(created)
		self.assertEqual(again.name, self.first.name)

	def test_modes_decide_what_is_refused(self):
		narrowed = json.loads(json.dumps(ORDER_V1))
		narrowed["properties"]["qty"]["maximum"] = 10
		self.assertFalse(versions.dry_run(self.subject, narrowed).compatible)
		subjects.set_subject_mode(self.subject, "FORWARD")
		self.assertTrue(versions.dry_run(self.subject, narrowed).compatible)
		subjects.set_subject_mode(self.subject, "none")
		self.assertEqual(frappe.db.get_value(SUBJECT, self.subject, "compatibility"), "NONE")
		self.assertEqual(versions.register_schema(self.subject, narrowed)[0].version, 2)
		subjects.set_subject_mode(self.subject, None)
		self.assertEqual(subjects.subject_mode(self.subject), subjects.default_mode())

	def test_the_dry_run_lists_every_reason_and_registers_nothing(self):
		breaking = with_property(without_property(ORDER_V1, "note"), "customer", {"type": "string"}, True)
		result = versions.dry_run(self.subject, breaking)
		self.assertFalse(result.compatible)
		self.assertEqual(len(result.reasons), 2)
		self.assertEqual(result.checked_versions, (1,))
		self.assertEqual(frappe.db.count(SCHEMA, {"subject": self.subject}), 1)

	def test_a_published_version_cannot_change_but_its_description_can(self):
		doc = frappe.get_doc(SCHEMA, self.first.name)
		doc.json_schema = json.dumps(with_property(ORDER_V1, "x", {}))
		self.assertRaisesRegex(OperationNotPermitted, "published and cannot change", doc.save)
		doc = frappe.get_doc(SCHEMA, self.first.name)
		doc.description = "Orders placed in the shop."
		doc.status = "Deprecated"
		doc.save()
		self.assertEqual(frappe.db.get_value(SCHEMA, doc.name, "status"), "Deprecated")

	def test_examples_must_match_the_schema(self):
		examples = [{"orderId": "A-1", "qty": 2}, {"orderId": "A-2", "qty": 0, "extra": 1}]
		with self.assertRaises(InvalidSchemaError) as refused:
			versions.register_schema(self.subject, with_property(ORDER_V1, "x", {}), examples=examples)
		self.assertIn("example 2: $.qty", str(refused.exception))
		self.assertIn("$.extra", str(refused.exception))

	def test_a_schema_that_is_not_json_schema_is_refused_with_its_defects(self):
		self.assertRaisesRegex(
			InvalidSchemaError, "not valid JSON", versions.register_schema, self.subject, "{"
		)
		self.assertRaisesRegex(
			InvalidSchemaError,
			"Invalid JSON Schema",
			versions.register_schema,
			self.subject,
			{"type": "objekt"},
		)

	def test_version_numbers_are_never_reused(self):
		second = versions.register_schema(self.subject, with_property(ORDER_V1, "a", {"type": "string"}))[0]
		frappe.delete_doc(SCHEMA, second.name)
		self.assertEqual(frappe.db.get_value(SUBJECT, self.subject, "latest_version"), 1)
		third = versions.register_schema(self.subject, with_property(ORDER_V1, "b", {"type": "string"}))[0]
		self.assertEqual(third.version, 3)
		self.assertRaises(VersionNotFound, versions.version_doc, self.subject, 2)
		self.assertEqual(versions.version_doc(self.subject, "latest").name, third.name)

	def test_deleting_a_subject_deletes_its_versions_but_not_their_numbers(self):
		versions.register_schema(self.subject, with_property(ORDER_V1, "a", {"type": "string"}))
		frappe.delete_doc(SUBJECT, self.subject)
		self.assertEqual(frappe.db.count(SCHEMA, {"subject": self.subject}), 0)
		self.assertIsNone(latest(self.subject))
		# Old events still name urn:…:1 and :2; the subject created again goes on from 3.
		again = versions.register_schema(self.subject, with_property(ORDER_V1, "z", {"type": "integer"}))[0]
		self.assertEqual(again.version, 3)

	def test_a_subject_must_be_an_event_type(self):
		from cauldron_fabric.registry.errors import InvalidSubject

		self.assertRaisesRegex(
			InvalidSubject, "sales_invoice.submitted", subjects.check_subject_name, "Bad Name"
		)
