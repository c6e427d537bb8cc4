"""Processed Events are deleted once older than *Keep processed marks for (days)*, in chunks.

Each consumed message leaves one row: without retention the table grows for ever.
"""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.consume.tracking import purge_processed_events
from cauldron_fabric.tests.utils import fabric_settings

FIELD = "processed_event_retention_days"


class TestProcessedEventRetention(FrappeTestCase):
	def setUp(self):
		self.group = f"retention-{frappe.generate_hash(length=6)}"
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "Processed Event", {"consumer_group": self.group})

	def marks(self, count: int, days_old: int) -> list[int]:
		"""Inserts ``count`` marks of the test's group, processed ``days_old`` days ago (committed)."""
		names = []
		for _ in range(count):
			mark = frappe.get_doc(
				{
					"doctype": "Processed Event",
					"consumer_group": self.group,
					"event_id": frappe.generate_hash(),
					"event_type": "todo.created",
				}
			)
			mark.db_insert()
			names.append(mark.name)
		frappe.db.sql(
			"UPDATE `tabProcessed Event` SET creation = NOW() - INTERVAL %s DAY, modified = creation WHERE name IN %s",
			(days_old, tuple(names)),
		)
		frappe.db.commit()
		return names

	def left(self) -> int:
		return frappe.db.count("Processed Event", {"consumer_group": self.group})

	def test_marks_older_than_the_setting_are_deleted_in_chunks_and_newer_ones_stay(self):
		old, recent = self.marks(7, days_old=31), self.marks(3, days_old=29)
		with fabric_settings(**{FIELD: 30}):
			deleted = purge_processed_events(chunk=2)  # four chunks and a short one
		self.assertGreaterEqual(deleted, len(old))
		self.assertEqual(frappe.db.count("Processed Event", {"name": ("in", old)}), 0)
		left = frappe.get_all("Processed Event", {"name": ("in", recent)}, pluck="name")
		self.assertEqual(sorted(left), recent)

	def test_zero_keeps_every_mark(self):
		self.marks(2, days_old=4000)
		with fabric_settings(**{FIELD: 0}):
			self.assertEqual(purge_processed_events(), 0)
		self.assertEqual(self.left(), 2)

	def test_the_daily_scheduler_runs_the_purge(self):
		events = frappe.get_hooks("scheduler_events")["daily_long"]
		self.assertIn("cauldron_fabric.consume.tracking.purge_processed_events", events)


class TestProcessedEventRetentionSetting(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def test_an_emptied_field_takes_the_default_and_a_typed_zero_stays_zero(self):
		settings = frappe.get_single("Fabric Settings")
		settings.bootstrap_servers = settings.bootstrap_servers or "127.0.0.1:9092"
		settings.set(FIELD, None)
		settings.save()
		self.assertEqual(settings.get(FIELD), 30)
		settings.set(FIELD, 0)
		settings.save()
		self.assertEqual(frappe.db.get_single_value("Fabric Settings", FIELD), 0)

	def test_a_negative_number_is_refused_with_what_to_write(self):
		settings = frappe.get_single("Fabric Settings")
		settings.set(FIELD, -1)
		with self.assertRaisesRegex(
			frappe.ValidationError, "between 0 and 36500. 0 keeps them for ever. Leave it empty for 30."
		):
			settings.save()

	def test_settings_saved_before_the_field_existed_get_the_default(self):
		from cauldron_fabric.patches.processed_marks_are_kept_for_the_default_days import execute

		frappe.db.delete("Singles", {"doctype": "Fabric Settings", "field": FIELD})
		frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
		frappe.db.value_cache.pop("Fabric Settings", None)
		self.assertEqual(frappe.db.get_single_value("Fabric Settings", FIELD), 0, "read as keep for ever")
		execute()
		frappe.db.value_cache.pop("Fabric Settings", None)
		self.assertEqual(frappe.db.get_single_value("Fabric Settings", FIELD), 30)
