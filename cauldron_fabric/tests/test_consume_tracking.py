"""The site's processed marks (consume/tracking.py) under contention: a mark another process holds
is an outage for the consumer, never a dead letter."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from cauldron_fabric.consume.tracking import INSERT_MARK, FrappeTrackingStore
from cauldron_fabric.core.consumer.tracking_sql import TrackingUnavailable, mark_values
from cauldron_fabric.services.relay import site_db_connector
from cauldron_fabric.tests.test_consume_integrity import step


class TestProcessedMarks(FrappeTestCase):
	def test_a_mark_another_process_holds_past_the_lock_wait_is_an_outage(self):
		# A redelivered event (a rebalance while its first run goes on) waits on the first run's
		# uncommitted mark. Frappe raises the lock wait as its own QueryTimeoutError, around
		# PyMySQL's error: the store did not see error 1205 in it, and the consumer filed the
		# event as a dead letter its Retry refused ("not an event").
		group, event = f"contention-{frappe.generate_hash(length=6)}", step()
		holder = site_db_connector()()  # the other member, its handler still running
		self.addCleanup(holder.close)
		with holder.cursor() as cursor:
			cursor.execute(INSERT_MARK, mark_values(group, event, None, "Administrator", now_datetime()))
		store = FrappeTrackingStore()
		store.begin()
		self.addCleanup(store.rollback)
		frappe.db.sql("SET SESSION innodb_lock_wait_timeout = 1")
		self.addCleanup(frappe.db.sql, "SET SESSION innodb_lock_wait_timeout = DEFAULT")
		with self.assertRaises(TrackingUnavailable) as raised:
			store.claim(group, event)
		self.assertIn(
			f"Event {event.id} is being processed by another member of group", str(raised.exception)
		)
		holder.rollback()  # that run gave the event up: this member claims it
		store.begin()
		self.assertTrue(store.claim(group, event))

	def test_a_read_only_database_is_an_outage(self):
		# During a maintenance the site's database takes no writes: Frappe raises InReadOnlyMode,
		# which the consumer filed as a dead letter; the events must wait for the end of it.
		group, event = f"read-only-{frappe.generate_hash(length=6)}", step()
		store = FrappeTrackingStore()
		store.begin()
		self.addCleanup(store.rollback)
		frappe.db.sql("SET SESSION TRANSACTION READ ONLY")
		self.addCleanup(frappe.db.sql, "SET SESSION TRANSACTION READ WRITE")
		frappe.db.rollback()  # the next transaction is read-only
		with self.assertRaises(TrackingUnavailable) as raised:
			store.claim(group, event)
		self.assertIn("read-only", str(raised.exception))
