"""Scheduled triggers on a real site: each due run fires once, across clock changes and migrates."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import frappe
from frappe.utils import now_datetime

from cauldron_fabric.delivery.schedules import fire_due_triggers
from cauldron_fabric.tests.test_delivery_support import DeliveryTestCase, deliveries
from cauldron_fabric.tests.utils import events_after, last_seq


class TestScheduledTriggers(DeliveryTestCase):
	def test_the_trigger_job_waits_for_the_migrate_that_adds_the_utc_run_time(self):
		# Between an upgrade's new code and its migrate the scheduler runs the new job on the old
		# table: selecting last_run_utc failed the job every minute until the migrate ended.
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": "*/5 * * * *"}]
		)
		frappe.db.sql_ddl("ALTER TABLE `tabEvent Subscription Schedule` DROP COLUMN `last_run_utc`")
		self.addCleanup(frappe.db.updatedb, "Event Subscription Schedule")
		frappe.cache.hdel("table_columns", "tabEvent Subscription Schedule")
		later = now_datetime() + dt.timedelta(minutes=6)
		self.assertEqual(fire_due_triggers(later), 0)
		frappe.db.updatedb("Event Subscription Schedule")
		start = last_seq()
		self.assertGreaterEqual(fire_due_triggers(later), 1)
		fired = events_after(start, "Event Subscription", owner.name)
		self.assertEqual(len(fired), 1, "the run missed meanwhile fires once after the migrate")

	def test_a_due_trigger_records_an_event_that_reaches_its_subscription_once(self):
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": "*/5 * * * *", "label": "digest"}]
		)
		listener = self.subscription(
			webhook_url="https://b.example.com/hook", event_types="schedule.*", condition=""
		)
		start = last_seq()
		later = now_datetime() + dt.timedelta(minutes=6)
		self.assertGreaterEqual(fire_due_triggers(later), 1)
		self.assertEqual(fire_due_triggers(later), 0, "fired twice for the same time")
		(event,) = [e for e in events_after(start, "Event Subscription", owner.name)]
		self.assertEqual(event["type"], "schedule.triggered")
		self.assertEqual(event["data"]["payload"]["schedule"], "digest")
		self.assertEqual([r.event_type for r in deliveries(owner.name)], ["schedule.triggered"])
		# Other subscriptions' triggers due by then reach the listener too: count this one's.
		to_listener = [json.loads(row.envelope)["id"] for row in deliveries(listener.name)]
		self.assertEqual(to_listener.count(event["id"]), 1)

	def test_a_subscription_with_triggers_saves_before_the_migrate_adds_the_utc_run_time(self):
		# Between an upgrade's new code and its migrate, the schedules' table and DocType lack
		# last_run_utc: reading it back on save refused every save of a subscription with triggers.
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": "*/5 * * * *"}]
		)
		schedule = "Event Subscription Schedule"
		frappe.db.sql_ddl(f"ALTER TABLE `tab{schedule}` DROP COLUMN `last_run_utc`")
		frappe.db.delete("DocField", {"parent": schedule, "fieldname": "last_run_utc"})
		frappe.db.commit()
		self.addCleanup(
			frappe.reload_doc, "cauldron_fabric", "doctype", "event_subscription_schedule", force=True
		)
		frappe.clear_cache(doctype=schedule)
		frappe.cache.hdel("table_columns", f"tab{schedule}")
		owner = frappe.get_doc("Event Subscription", owner.name)
		owner.description = "saved before the migrate"
		owner.save()
		frappe.db.commit()
		self.assertEqual(
			frappe.db.get_value("Event Subscription", owner.name, "description"), "saved before the migrate"
		)

	def test_saving_a_subscription_opened_before_a_trigger_fired_does_not_fire_it_again(self):
		# The scheduler claims a trigger by writing last_triggered_at behind the form's back;
		# the form (Desk) still holds the old value and a save must not write it back.
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": "*/5 * * * *"}]
		)
		opened = frappe.get_doc("Event Subscription", owner.name)
		later = now_datetime() + dt.timedelta(minutes=6)
		self.assertEqual(fire_due_triggers(later), 1)
		opened.description = "edited while the trigger fired"
		opened.save()
		frappe.db.commit()
		self.assertEqual(fire_due_triggers(later), 0, "fired twice for the same time")
		self.assertEqual(len(deliveries(owner.name)), 1)

	def use_time_zone(self, zone: str) -> None:
		"""Sets the site's time zone (System Settings) for this test; the trigger job commits."""

		def set_zone(name: str) -> None:
			frappe.db.set_single_value("System Settings", "time_zone", name)
			frappe.db.commit()
			frappe.clear_document_cache("System Settings", "System Settings")
			if hasattr(frappe.local, "system_settings"):
				del frappe.local.system_settings

		self.addCleanup(set_zone, frappe.db.get_single_value("System Settings", "time_zone"))
		set_zone(zone)

	def runs_across(self, start: dt.datetime, end: dt.datetime) -> dict[str, list[str]]:
		"""Runs the trigger job once a minute from ``start`` to ``end`` (UTC); returns the runs per cron.

		The subscription's triggers count as last fired the minute before ``start`` on the site's
		clock, as a site running through the change would have them.
		"""
		crons = ["*/30 * * * *", "0 * * * *", "30 2 * * *"]
		owner = self.subscription(
			webhook_url="https://a.example.com/hook", schedules=[{"cron": cron} for cron in crons]
		)
		zone = ZoneInfo(frappe.db.get_single_value("System Settings", "time_zone"))
		before = (start - dt.timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None)
		frappe.db.sql(
			"UPDATE `tabEvent Subscription Schedule` SET last_triggered_at = %s WHERE parent = %s",
			(before, owner.name),
		)
		frappe.db.commit()
		seq, minute = last_seq(), start
		while minute <= end:
			fire_due_triggers(minute)
			minute += dt.timedelta(minutes=1)
		runs: dict[str, list[str]] = {cron: [] for cron in crons}
		for event in events_after(seq, "Event Subscription", owner.name):
			payload = event["data"]["payload"]
			instant = dt.datetime.fromisoformat(payload["scheduledFor"]).astimezone(dt.timezone.utc)
			runs[payload["cron"]].append(instant.strftime("%H:%M"))
		return runs

	def test_no_run_is_skipped_or_repeated_when_the_clocks_go_back(self):
		# Berlin, 25 October 2026: 03:00 CEST (01:00 UTC) becomes 02:00 CET, 02:00-03:00 shows twice.
		self.use_time_zone("Europe/Berlin")
		utc = dt.timezone.utc
		runs = self.runs_across(
			dt.datetime(2026, 10, 24, 22, 45, tzinfo=utc), dt.datetime(2026, 10, 25, 2, 40, tzinfo=utc)
		)
		every_half_hour = ["23:00", "23:30", "00:00", "00:30", "01:00", "01:30", "02:00", "02:30"]
		self.assertEqual(runs["*/30 * * * *"], every_half_hour)
		self.assertEqual(runs["0 * * * *"], ["23:00", "00:00", "01:00", "02:00"])
		self.assertEqual(runs["30 2 * * *"], ["00:30"], "a daily run fires once, in the first 02:30")

	def test_no_run_is_skipped_or_repeated_when_the_clocks_go_forward(self):
		# Berlin, 29 March 2026: 02:00 CET (01:00 UTC) becomes 03:00 CEST, 02:00-03:00 never shows.
		self.use_time_zone("Europe/Berlin")
		utc = dt.timezone.utc
		runs = self.runs_across(
			dt.datetime(2026, 3, 28, 23, 45, tzinfo=utc), dt.datetime(2026, 3, 29, 2, 40, tzinfo=utc)
		)
		self.assertEqual(runs["*/30 * * * *"], ["00:00", "00:30", "01:00", "01:30", "02:00", "02:30"])
		self.assertEqual(runs["0 * * * *"], ["00:00", "01:00", "02:00"])
		self.assertEqual(runs["30 2 * * *"], ["01:30"], "02:30 never shows: it runs an hour later, at 03:30")

	def test_a_trigger_that_can_never_run_does_not_stop_the_others(self):
		# Saved before such expressions were refused (or written by a patch): it must be skipped,
		# not raise in every run of the job before the triggers after it are looked at.
		stuck = self.subscription(webhook_url="https://a.example.com/hook", schedules=[{"cron": "0 0 * * *"}])
		frappe.db.set_value("Event Subscription Schedule", stuck.schedules[0].name, "cron", "0 0 31 4 *")
		frappe.db.commit()
		owner = self.subscription(
			webhook_url="https://b.example.com/hook", schedules=[{"cron": "*/5 * * * *"}]
		)
		self.assertGreaterEqual(fire_due_triggers(now_datetime() + dt.timedelta(minutes=6)), 1)
		self.assertEqual([r.event_type for r in deliveries(owner.name)], ["schedule.triggered"])
		self.assertEqual(deliveries(stuck.name), [])
