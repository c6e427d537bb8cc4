"""Every event into the fabric is checked against its schema, as Fabric Settings say, cheaply."""

from __future__ import annotations

import json
import threading
import time

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.core.envelope import Envelope, EventData
from cauldron_fabric.core.schema import load_catalog
from cauldron_fabric.emit.changes import document_payload
from cauldron_fabric.emit.recorder import new_envelope, record
from cauldron_fabric.registry import cache, subjects, versions
from cauldron_fabric.registry.errors import EventSchemaViolation
from cauldron_fabric.registry.recording import check_consumed, check_events
from cauldron_fabric.tests.test_registry_support import (
	PROBE,
	PROBE_TYPE,
	drop_subjects,
	ensure_probe_doctype,
	latest,
	new_probe,
	queries_issued,
	unique_subject,
)
from cauldron_fabric.tests.utils import events_after, fabric_settings, last_seq

CREATED = f"{PROBE_TYPE}.created"
VALID_STATUSES = ("Recorded", "Pending")  # Pending when a broker is configured


def stricter_created_schema() -> dict:
	"""The derived schema of probe creations with ``amount`` capped at 100."""
	schema = json.loads(latest(CREATED).json_schema)
	schema["properties"]["doc"]["properties"]["amount"]["maximum"] = 100
	return schema


class TestDocumentEvents(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_probe_doctype()
		drop_subjects(like=f"{PROBE_TYPE}.%")

	def setUp(self):
		frappe.set_user("Administrator")
		self.start = last_seq()

	def log_rows(self):
		return frappe.db.sql(
			"SELECT event_type, status, data_schema, envelope FROM `tabEvent Log` WHERE name > %s ORDER BY name",
			(self.start,),
			as_dict=True,
		)

	def test_the_first_event_of_a_doctype_derives_its_schemas_and_carries_data_schema(self):
		probe = new_probe("first")
		derived = frappe.get_all(
			"Event Subject", filters={"reference_doctype": PROBE}, fields=["name", "origin", "latest_version"]
		)
		self.assertEqual(len(derived), 4)  # created, updated, deleted, renamed: it cannot be submitted
		self.assertEqual({row.origin for row in derived}, {"DocType"})
		(row,) = self.log_rows()
		uri = f"urn:cauldron:schema:{CREATED}:1"
		self.assertEqual((row.event_type, row.data_schema), (CREATED, uri))
		self.assertIn(row.status, VALID_STATUSES)
		self.assertEqual(json.loads(row.envelope)["dataSchema"], uri)
		self.assertEqual(events_after(self.start, PROBE, probe.name)[0]["dataSchema"], uri)

	def test_what_frappe_stores_without_validating_is_never_refused(self):
		# ignore_mandatory leaves a mandatory field empty, a data import skips a Select's
		# options, a cancel or delete does not validate at all: a derived schema stricter than
		# Frappe refused these saves under "Reject".
		with fabric_settings(invalid_event_policy="Reject"):
			self.start = last_seq()
			untitled = frappe.get_doc({"doctype": PROBE, "title": None, "lines": []})
			untitled.insert(ignore_mandatory=True)
			frappe.flags.in_import = True
			try:
				imported = new_probe("imported", stage="Archived")
			finally:
				frappe.flags.in_import = False
			imported.delete()
			rows = [row for row in self.log_rows() if row.event_type.startswith(PROBE_TYPE)]
			frappe.db.rollback()
		self.assertEqual(
			[(row.event_type, row.status in VALID_STATUSES) for row in rows],
			[(CREATED, True), (CREATED, True), (f"{PROBE_TYPE}.deleted", True)],
		)
		self.assertEqual(json.loads(rows[1].envelope)["data"]["payload"]["doc"]["stage"], "Archived")

	def test_an_event_that_breaks_its_schema_is_rejected_when_settings_say_reject(self):
		new_probe("derive first")
		subjects.set_subject_mode(CREATED, "NONE")
		strict = versions.register_schema(CREATED, stricter_created_schema())[0]
		self.addCleanup(drop_subjects, CREATED)
		with fabric_settings(invalid_event_policy="Reject"):
			start = last_seq()
			with self.assertRaises(EventSchemaViolation) as rejected:
				new_probe("too big", amount=500)
			frappe.db.rollback()
		message = str(rejected.exception)
		self.assertIn("$.data.payload.doc.amount", message)
		self.assertIn("[maximum]", message)
		self.assertIn(strict.data_schema, message)
		self.assertEqual(events_after(start), [])
		self.assertFalse(frappe.db.exists(PROBE, {"title": "too big"}))

	def test_an_event_that_breaks_its_schema_is_kept_as_invalid_when_settings_say_so(self):
		new_probe("derive first")
		subjects.set_subject_mode(CREATED, "NONE")
		strict = versions.register_schema(CREATED, stricter_created_schema())[0]
		self.addCleanup(drop_subjects, CREATED)
		with fabric_settings(invalid_event_policy="Record as invalid"):
			start = last_seq()
			self.start = start
			probe = new_probe("too big, kept", amount=500)
			fine = new_probe("small", amount=5)
			rows = self.log_rows()
			errors = frappe.db.sql(
				"SELECT last_error FROM `tabEvent Log` WHERE name > %s ORDER BY name", (start,), pluck=True
			)
			frappe.db.rollback()
		self.assertEqual(rows[0].status, "Invalid")
		self.assertIn(rows[1].status, VALID_STATUSES)
		# The Event Log says why the event was kept as Invalid: the schema, the path and the rule.
		self.assertIn(strict.data_schema, errors[0])
		self.assertIn("$.data.payload.doc.amount", errors[0])
		self.assertIn("[maximum]", errors[0])
		self.assertIsNone(errors[1])
		self.assertEqual([row.data_schema for row in rows], [strict.data_schema] * 2)
		self.assertEqual(json.loads(rows[0].envelope)["data"]["entityId"], probe.name)
		self.assertEqual(json.loads(rows[1].envelope)["data"]["entityId"], fine.name)

	def test_a_patch_or_uninstall_is_never_failed_by_an_invalid_event(self):
		new_probe("derive first")
		subjects.set_subject_mode(CREATED, "NONE")
		versions.register_schema(CREATED, stricter_created_schema())
		self.addCleanup(drop_subjects, CREATED)
		for flag in ("in_patch", "in_uninstall"):
			with self.subTest(flag), fabric_settings(invalid_event_policy="Reject"):
				self.start = last_seq()
				frappe.flags[flag] = True
				try:
					new_probe("patched", amount=500)
				finally:
					frappe.flags[flag] = False
				rows = self.log_rows()
				frappe.db.rollback()
			self.assertEqual([row.status for row in rows], ["Invalid"])


class TestCheckedPaths(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")
		self.login = next(entry for entry in load_catalog() if entry.type == "user.login")

	def envelope(self, event_type: str, payload: dict, data_schema: str | None = None) -> Envelope:
		envelope = new_envelope(event_type, "User", "jane@example.com", "login", payload)
		return envelope.with_schema(data_schema) if data_schema else envelope

	def test_events_recorded_directly_are_checked_like_document_events(self):
		start = last_seq()
		record([self.envelope("user.login", dict(self.login.examples[0]))])
		(event,) = events_after(start)
		self.assertEqual(event["dataSchema"], versions.version_doc("user.login").data_schema)
		with fabric_settings(invalid_event_policy="Reject"):
			self.assertRaisesRegex(
				EventSchemaViolation,
				r"\$\.data\.payload\.user.*\[required\]",
				record,
				[self.envelope("user.login", {"ip": "203.0.113.7"})],
			)

	def test_an_event_type_without_a_schema_is_accepted_without_data_schema(self):
		envelope = self.envelope(unique_subject("fabric_unregistered"), {"anything": [1, 2]})
		((checked, violations),) = check_events([envelope])
		self.assertEqual(violations, [])
		self.assertIsNone(checked.data_schema)

	def test_a_declared_version_that_is_not_registered_is_a_violation(self):
		envelope = self.envelope(
			"user.login", dict(self.login.examples[0]), "urn:cauldron:schema:user.login:999"
		)
		with fabric_settings(invalid_event_policy="Record as invalid"):
			((checked, violations),) = check_events([envelope])
		self.assertEqual([v.path for v in violations], ["$.dataSchema"])
		self.assertEqual(checked.data_schema, "urn:cauldron:schema:user.login:999")

	def test_consumed_events_are_checked_without_raising(self):
		body = self.envelope("user.login", {"user": "jane@example.com", "device": "tablet"}).to_dict()
		checked, violations = check_consumed(body)
		self.assertEqual(checked.data_schema, versions.version_doc("user.login").data_schema)
		self.assertEqual([(v.path, v.rule) for v in violations], [("$.data.payload.device", "enum")])
		_fine, none = check_consumed(self.envelope("user.login", dict(self.login.examples[0])))
		self.assertEqual(none, [])
		other = Envelope(
			id="x",
			type="elsewhere_doc.created",
			source="s",
			time="2030-01-01T00:00:00Z",
			data=EventData("Elsewhere Doc", "1", "created", {"doc": {}}),
		)
		self.assertEqual(check_consumed(other), (other, []))
		self.assertFalse(frappe.db.exists("Event Subject", "elsewhere_doc.created"))


class TestLookupCost(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")
		login = next(entry for entry in load_catalog() if entry.type == "user.login")
		self.envelopes = [new_envelope("user.login", "User", "jane", "login", dict(login.examples[0]))]

	def test_checking_known_event_types_sends_no_query(self):
		check_events(self.envelopes)  # warm the cache
		before = queries_issued()
		for _ in range(200):
			check_events(self.envelopes)
		self.assertEqual(queries_issued() - before, 1)  # the SHOW STATUS of queries_issued itself

	def test_a_registration_elsewhere_reaches_a_process_that_cached_the_old_version(self):
		subject = unique_subject()
		versions.register_schema(subject, {"type": "object"})
		frappe.db.commit()
		self.addCleanup(drop_subjects, subject)
		site = frappe.local.site
		old = self.lookup_in_new_request(site, subject)
		self.assertEqual(old, 1)
		stale = cache._SHARED[site]  # what another process would still hold
		versions.register_schema(subject, {"type": "object", "properties": {"a": {}}})
		frappe.db.commit()
		cache._SHARED[site] = stale  # that process never saw this registration
		self.assertEqual(self.lookup_in_new_request(site, subject), 2)

	def lookup_in_new_request(self, site: str, subject: str) -> int:
		"""Looks the subject up twice in a new request (thread) as a web worker would."""
		found = {}

		def request():
			frappe.init(site=site)
			frappe.connect()
			try:
				cache.latest_schema(subject)  # a first request after a change fills its own cache
				frappe.local.fabric_schemas = None
				found["version"] = cache.latest_schema(subject).version
			finally:
				frappe.destroy()

		thread = threading.Thread(target=request)
		thread.start()
		thread.join()
		return found["version"]


class TestLookupTiming(FrappeTestCase):
	def test_a_check_of_a_typical_document_event_takes_microseconds(self):
		ensure_probe_doctype()
		probe = new_probe("timing", lines=[{"item": f"line {n}", "qty": n + 1} for n in range(10)])
		envelope = new_envelope(CREATED, PROBE, probe.name, "created", {"doc": document_payload(probe)})
		check_events([envelope])
		started = time.perf_counter()
		for _ in range(2000):
			((checked, violations),) = check_events([envelope])
		per_event = (time.perf_counter() - started) / 2000
		self.assertEqual(violations, [])
		self.assertIsNotNone(checked.data_schema)
		self.assertLess(per_event, 0.001, f"{per_event * 1e6:.0f} µs per event")
