"""The registry holds under misuse and load: dataSchema naming another type, concurrent registrations."""

from __future__ import annotations

import threading

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.emit.recorder import new_envelope
from cauldron_fabric.registry import versions
from cauldron_fabric.registry.recording import check_consumed
from cauldron_fabric.tests.test_registry_support import drop_subjects, unique_subject

STRICT = {
	"type": "object",
	"properties": {"qty": {"type": "integer", "maximum": 10}},
	"required": ["qty"],
	"additionalProperties": False,
}


class TestRegistryIntegrity(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")

	def test_a_data_schema_of_another_event_type_does_not_bypass_the_schema_of_the_type(self):
		strict, lax = unique_subject("strict"), unique_subject("lax")
		versions.register_schema(strict, STRICT)
		(lax_doc, _created) = versions.register_schema(lax, {})
		self.addCleanup(drop_subjects, strict, lax)
		envelope = new_envelope(strict, "User", "jane@example.com", "placed", {"qty": 999, "extra": 1})
		_checked, violations = check_consumed(envelope.with_schema(lax_doc.data_schema))
		self.assertEqual([v.path for v in violations], ["$.dataSchema"])

	def test_concurrent_registrations_of_a_new_subject_all_get_versions(self):
		subject = unique_subject("race")
		frappe.db.commit()
		results: dict[int, object] = {}

		def register(index: int, schema: dict) -> None:
			frappe.init(site=site, sites_path=sites_path)
			frappe.connect()
			frappe.set_user("Administrator")
			try:
				doc, created = versions.register_schema(subject, schema)
				frappe.db.commit()
				results[index] = (doc.version, created)
			except Exception as exc:
				frappe.db.rollback()
				results[index] = repr(exc)
			finally:
				frappe.destroy()

		site, sites_path = frappe.local.site, frappe.local.sites_path
		self.addCleanup(lambda: (drop_subjects(subject), frappe.db.commit()))
		threads = [
			threading.Thread(target=register, args=(i, {"type": "object", "description": f"v{i}"}))
			for i in range(3)
		]
		threads += [
			threading.Thread(target=register, args=(3 + i, {"type": "object", "title": "same"}))
			for i in range(3)
		]
		for thread in threads:
			thread.start()
		for thread in threads:
			thread.join()
		self.assertTrue(all(isinstance(r, tuple) for r in results.values()), results)
		self.assertEqual(sorted({r[0] for r in results.values()}), [1, 2, 3, 4])
		self.assertEqual(sorted(r[1] for i, r in results.items() if i >= 3), [False, False, True])
