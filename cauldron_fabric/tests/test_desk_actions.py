"""What an admin's clicks in Desk get back: clear messages, never a Server Error."""

from __future__ import annotations

import json

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import schemas as schemas_api
from cauldron_fabric.patches import stored_zero_fabric_settings_mean_the_default as stored_zeros_patch
from cauldron_fabric.registry.errors import InvalidSchemaError, InvalidSubject, OperationNotPermitted
from cauldron_fabric.testing.events import document_event
from cauldron_fabric.tests.test_http_support import make_user, request
from cauldron_fabric.tests.test_registry_api import session
from cauldron_fabric.tests.utils import fabric_settings, listed_patches


def consumer_dead_letter() -> frappe.model.document.Document:
	"""Files the Dead Letter a Kafka consumer leaves for an event whose handler kept failing."""
	envelope = document_event(
		"Charge",
		"CH-1",
		"created",
		{"amount": 1},
		type="fabric_desk_test.charge.created",
		source="urn:cauldron:billing",
		user=None,
		tenant=None,
	)
	return frappe.get_doc(
		{
			"doctype": "Dead Letter",
			"source_type": "Consumer",
			"status": "Dead",
			"consumer_group": "desk-test-group",
			"reference": f"desk-test/0/{frappe.generate_hash(length=8)}",
			"event_id": envelope.id,
			"event_type": envelope.type,
			"attempts": 2,
			"last_error": "ledger closed",
			"error_class": "RuntimeError",
			"attempt_log": json.dumps({"reason": "handler-failed", "broker": "kafka"}),
			"origin_topic": "desk-test",
			"envelope": envelope.to_json(),
		}
	).insert(ignore_permissions=True)


class TestDeadLetterButtons(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")

	def test_retrying_a_consumer_letter_without_a_broker_says_what_to_set(self):
		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			letter = consumer_dead_letter()
			self.addCleanup(frappe.db.commit)
			self.addCleanup(frappe.db.delete, "Dead Letter", {"name": letter.name})
			# The form's Retry button (run_doc_method): a ValidationError is a message in Desk,
			# anything else a Server Error (HTTP 500) naming the exception class.
			with self.assertRaises(frappe.ValidationError) as raised:
				letter.retry()
		self.assertIn("Fabric Settings", str(raised.exception))
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Dead")

	def test_a_note_discarded_with_markup_before_the_upgrade_is_kept_as_text_desk_cannot_run(self):
		# Discard wrote its note with db_set, past Frappe's sanitizing, into a field the letter's
		# form renders as HTML; the fix keeps new notes plain, and the migrate rewrites stored ones.
		from cauldron_fabric.patches import discard_notes_keep_markup_as_brackets as patch

		marked, plain_note = consumer_dead_letter(), consumer_dead_letter()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "Dead Letter", {"name": ("in", [marked.name, plain_note.name])})
		markup = 'stale <img src=x onerror="alert(1)"> a > b'
		for letter, note in ((marked, markup), (plain_note, "ledger retired")):
			letter.db_set({"status": "Discarded", "resolution_note": note}, update_modified=False)
		modified = frappe.db.get_value("Dead Letter", plain_note.name, "modified")
		patch.execute()
		self.assertEqual(
			frappe.db.get_value("Dead Letter", marked.name, "resolution_note"),
			'stale \u2039img src=x onerror="alert(1)"\u203a a \u203a b',
		)
		self.assertEqual(
			frappe.db.get_value("Dead Letter", plain_note.name, "resolution_note"), "ledger retired"
		)
		self.assertEqual(frappe.db.get_value("Dead Letter", plain_note.name, "modified"), modified)
		self.assertIn(patch.__name__, listed_patches())


def shown_messages() -> str:
	"""Returns what Desk would show of the request's message log."""
	return " ".join(str(m.get("message") if isinstance(m, dict) else m) for m in frappe.message_log)


class TestRegistryFormsSayWhy(FrappeTestCase):
	"""Registry errors are raised with their HTTP status; Desk shows only the message log."""

	def setUp(self):
		frappe.set_user("Administrator")
		frappe.clear_messages()
		self.subject = f"fabric_desk_test.s{frappe.generate_hash(length=6)}.created"
		frappe.get_doc({"doctype": "Event Subject", "subject": self.subject}).insert()
		self.first = frappe.get_doc(
			{"doctype": "Event Schema", "subject": self.subject, "json_schema": '{"type": "object"}'}
		).insert()
		frappe.clear_messages()

	def tearDown(self):
		frappe.db.rollback()

	def test_saving_a_schema_that_is_not_json_says_so(self):
		doc = frappe.get_doc({"doctype": "Event Schema", "subject": self.subject, "json_schema": "{not json"})
		with self.assertRaises(InvalidSchemaError):
			doc.insert()
		self.assertIn("not valid JSON", shown_messages())

	def test_saving_a_version_that_is_already_registered_says_so(self):
		doc = frappe.get_doc(
			{"doctype": "Event Schema", "subject": self.subject, "json_schema": self.first.json_schema}
		)
		with self.assertRaises(OperationNotPermitted):
			doc.insert()
		self.assertIn("already registered as version 1", shown_messages())

	def test_saving_a_subject_that_is_not_an_event_type_says_so(self):
		with self.assertRaises(InvalidSubject):
			frappe.get_doc({"doctype": "Event Subject", "subject": "Bad Name!"}).insert()
		self.assertIn("is not an event type", shown_messages())

	def test_check_compatibility_of_a_schema_that_is_not_json_says_so(self):
		with self.assertRaises(InvalidSchemaError):
			schemas_api.check_compatibility(self.subject, "{not json")
		self.assertIn("not valid JSON", shown_messages())
		self.assertEqual(frappe.local.response.get("error_code"), 42201)

	def test_an_incompatible_schema_is_shown_once_with_its_reasons(self):
		schema = '{"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}}'
		doc = frappe.get_doc({"doctype": "Event Schema", "subject": self.subject, "json_schema": schema})
		with self.assertRaises(frappe.ValidationError):
			doc.insert()
		self.assertEqual(len(frappe.message_log), 1)
		self.assertIn("amount", shown_messages())


class TestEventCatalogPage(FrappeTestCase):
	def test_the_codegen_command_names_this_site(self):
		manager = make_user("fabric-desk-catalog@example.com", ["Fabric Manager"])
		page = request("get", "/event-catalog", session(manager))
		self.assertEqual(page.status_code, 200)
		hint = page.get_data(as_text=True).split("fabric codegen")[0].rsplit("<code>", 1)[-1]
		self.assertEqual(hint, f"bench --site {frappe.local.site} ")


# The numbers of Fabric Settings a stored 0 stood for, and their defaults.
RESTORED_NUMBERS = stored_zeros_patch.BEHAVED_AS


class TestFabricSettingsNumbers(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def test_consumer_and_request_numbers_out_of_range_are_refused_not_replaced(self):
		for fieldname, value, limit in (
			("consumer_max_attempts", 50, "between 1 and 20"),
			("consumer_crash_limit", -1, "between 1 and 20"),
			("circuit_failure_threshold", -3, "between 1 and 10000"),
			("circuit_open_seconds", -30, "between 1 and 86400"),
			("request_timeout_seconds", -5, "more than 0 and at most 120"),
			("handler_overdue_seconds", -5, "between 1 and 86400"),
		):
			with self.subTest(fieldname):
				settings = frappe.get_single("Fabric Settings")
				settings.set(fieldname, value)
				with self.assertRaisesRegex(frappe.ValidationError, limit):
					settings.save()

	def test_a_typed_zero_is_refused_with_what_to_write_not_read_as_the_default(self):
		# Each of these was saved and quietly became its default (0 attempts meant 5).
		for fieldname, message in (
			("consumer_max_attempts", "between 1 and 20.*1 runs the handler once"),
			("consumer_crash_limit", "between 1 and 20"),
			("circuit_failure_threshold", "between 1 and 10000"),
			("circuit_window_seconds", "between 1 and 86400"),
			("circuit_open_seconds", "between 1 and 86400"),
			("request_timeout_seconds", "more than 0 and at most 120"),
			("delivery_batch_size", "between 1 and 5000"),
			("handler_overdue_seconds", r"Handlers overdue after \(seconds\) must be between 1 and 86400"),
		):
			with self.subTest(fieldname):
				settings = frappe.get_single("Fabric Settings")
				settings.set(fieldname, 0)
				with self.assertRaisesRegex(frappe.ValidationError, f"{message}.*Leave it empty for"):
					settings.save()

	def test_an_emptied_number_takes_its_default(self):
		from cauldron_fabric.consume.settings import load_consumer_settings
		from cauldron_fabric.delivery.worker import load_delivery_settings

		settings = frappe.get_single("Fabric Settings")
		previous = settings.bootstrap_servers
		settings.update({fieldname: None for fieldname in RESTORED_NUMBERS})
		settings.bootstrap_servers = previous or "127.0.0.1:9092"
		settings.save()
		self.assertEqual({f: settings.get(f) for f in RESTORED_NUMBERS}, RESTORED_NUMBERS)
		consumer = load_consumer_settings("kafka")
		self.assertEqual((consumer.max_attempts, consumer.crash_limit, consumer.request_timeout), (5, 3, 10))
		self.assertEqual(load_delivery_settings().batch_size, 100)
		settings.handler_overdue_seconds = None
		settings.save()
		self.assertEqual(
			(settings.handler_overdue_seconds, load_delivery_settings().overdue_after), (300, 300)
		)

	def test_a_zero_stored_when_it_meant_the_default_keeps_meaning_the_default(self):
		from cauldron_fabric.patches.stored_zero_fabric_settings_mean_the_default import execute

		for fieldname in RESTORED_NUMBERS:
			frappe.db.set_single_value("Fabric Settings", fieldname, 0)
		execute()
		frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
		settings = frappe.get_single("Fabric Settings")
		self.assertEqual({f: settings.get(f) for f in RESTORED_NUMBERS}, RESTORED_NUMBERS)
		settings.save()  # the form saves again, nothing refused


class TestFabricSettingsDocTypeLists(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def test_doctypes_the_emitter_always_skips_are_refused_with_the_reason(self):
		for fieldname, doctype, reason in (
			("allowed_doctypes", "Has Role", "child table"),
			("denied_doctypes", "Has Role", "child table"),
			("allowed_doctypes", "Event Log", "the fabric's own DocTypes"),
			("allowed_doctypes", "Error Log", "built-in deny list"),
			# Settings and configuration are system changes: the allow list never limited them.
			("allowed_doctypes", "System Settings", "system.change"),
			("allowed_doctypes", "Custom Field", "system.change"),
		):
			with self.subTest(f"{fieldname} {doctype}"):
				settings = frappe.get_single("Fabric Settings")
				settings.set(fieldname, [{"document_type": doctype}])
				with self.assertRaisesRegex(frappe.ValidationError, reason):
					settings.save()

	def test_ordinary_doctypes_are_still_accepted(self):
		settings = frappe.get_single("Fabric Settings")
		settings.set("allowed_doctypes", [{"document_type": "ToDo"}])
		settings.set("denied_doctypes", [{"document_type": "Note"}])
		settings.save()
