"""Status counts stop at a cap, and a capped count says so: a backlog of millions is read in
milliseconds, and the number shown is never wrong."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import settings as settings_api
from cauldron_fabric.core.outbox.statements import DEFAULT_SEQUENCE, DEFAULT_TABLE, FAILED, PENDING
from cauldron_fabric.delivery.status import delivery_queue_status
from cauldron_fabric.services.status import STATUS_COUNT_CAP, outbox_status
from cauldron_fabric.tests.utils import emitted_heartbeat

OWNER = "status-counts@fabric.test"


def add_events(rows: int, status: str) -> None:
	"""Appends ``rows`` events with ``status``, not due for a day (so no relay takes them)."""
	frappe.db.sql(
		f"""INSERT INTO `{DEFAULT_TABLE}` (name, creation, modified, owner, modified_by, event_id,
			event_type, entity, entity_id, action, partition_key, envelope, status, next_attempt_at)
		SELECT nextval(`{DEFAULT_SEQUENCE}`), NOW(6), NOW(6), %(owner)s, %(owner)s, UUID(), 'todo.updated',
			'ToDo', seq, 'updated', CONCAT('ToDo/', seq), '{{}}', %(status)s, NOW(6) + INTERVAL 1 DAY
		FROM seq_1_to_{int(rows)}""",
		{"owner": OWNER, "status": status},
	)
	frappe.db.commit()


def add_deliveries(rows: int, status: str) -> None:
	frappe.db.sql(
		f"""INSERT INTO `tabEvent Delivery` (name, creation, modified, owner, modified_by,
			subscription, event_id, event_type, envelope, status, attempts, next_attempt_at)
		SELECT nextval(`event_delivery_id_seq`), NOW(6), NOW(6), %(owner)s, %(owner)s,
			'status-counts', UUID(), 'todo.updated', '{{}}', %(status)s, 1, NOW(6) + INTERVAL 1 DAY
		FROM seq_1_to_{int(rows)}""",
		{"owner": OWNER, "status": status},
	)
	frappe.db.commit()


class TestStatusCounts(FrappeTestCase):
	def tearDown(self):
		frappe.db.delete("Event Log", {"owner": OWNER})
		frappe.db.delete("Event Delivery", {"owner": OWNER})
		frappe.db.commit()
		super().tearDown()

	def test_a_count_under_the_cap_is_exact_and_says_it_is_not_capped(self):
		before = outbox_status()
		self.assertFalse(before["failedCapped"])
		add_events(3, FAILED)
		after = outbox_status()
		self.assertEqual((after["failed"] - before["failed"], after["failedCapped"]), (3, False))

	def test_a_backlog_past_the_cap_is_shown_as_the_cap_and_capped(self):
		add_events(STATUS_COUNT_CAP + 1, PENDING)
		status = outbox_status()
		self.assertEqual((status["pending"], status["pendingCapped"]), (STATUS_COUNT_CAP, True))
		api = settings_api.get_status()["outbox"]
		self.assertEqual((api["pending"], api["pendingCapped"]), (STATUS_COUNT_CAP, True))

	def test_exactly_the_cap_is_not_capped(self):
		pending = outbox_status()["pending"]
		add_events(STATUS_COUNT_CAP - pending, PENDING)
		status = outbox_status()
		self.assertEqual((status["pending"], status["pendingCapped"]), (STATUS_COUNT_CAP, False))

	def test_the_delivery_queue_counts_are_capped_the_same_way(self):
		add_deliveries(STATUS_COUNT_CAP + 1, "Dead")
		queue = delivery_queue_status()
		self.assertEqual((queue["dead"], queue["deadCapped"]), (STATUS_COUNT_CAP, True))
		self.assertEqual((queue["pendingCapped"], queue["dueCapped"]), (False, False))

	def test_the_heartbeat_of_a_capped_backlog_passes_its_schema(self):
		add_events(STATUS_COUNT_CAP + 1, PENDING)
		row = emitted_heartbeat()
		self.assertNotEqual(row.status, "Invalid", row.last_error)
		outbox = frappe.parse_json(row.envelope)["data"]["payload"]["outbox"]
		self.assertEqual((outbox["pending"], outbox["pendingCapped"]), (STATUS_COUNT_CAP, True))
