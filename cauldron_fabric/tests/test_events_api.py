"""The event listing API as a reader who follows the Event Log page after page uses it."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from cauldron_fabric.api import events as events_api
from cauldron_fabric.core.outbox.statements import build_append
from cauldron_fabric.core.ports import OutboxAppend
from cauldron_fabric.emit.recorder import new_envelope, record
from cauldron_fabric.services.relay import site_db_connector
from cauldron_fabric.tests.utils import last_seq


def follow(cursor: int, **filters) -> tuple[list[dict], int]:
	"""Reads every page after ``cursor`` as a client does; returns the events and the new cursor."""
	seen = []
	while True:
		page = events_api.list_events(after=cursor, limit=1, **filters)
		seen += page["events"]
		if not page["next"]:
			return seen, cursor
		cursor = page["next"]


def overtaken(slow, entity_id: str) -> tuple:
	"""Draws an event's number on ``slow`` without committing, then records and commits a later
	event of the same document on the site's connection; returns (early, late)."""
	early = new_envelope("fabric_probe.saved", "Fabric Probe", entity_id, "saved", {"n": 1})
	sql, params = build_append([OutboxAppend(early)], actor="Administrator", now=now_datetime())
	with slow.cursor() as cursor:
		cursor.execute(sql, params)
	late = new_envelope("fabric_probe.saved", "Fabric Probe", entity_id, "saved", {"n": 2})
	record([late])
	frappe.db.commit()
	return early, late


def read_before_and_after(start: int, entity_id: str, commit) -> list[str]:
	"""Follows the cursor from ``start``, runs ``commit``, follows on from where it stopped (as the
	reader's next request); returns the ids read."""
	seen, cursor = follow(start, entity_id=entity_id)
	commit()
	frappe.db.rollback()
	more, _ = follow(cursor, entity_id=entity_id)
	return [event["envelope"]["id"] for event in seen + more]


class TestListEvents(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()  # each call reads from a fresh snapshot, as a new request does

	def test_a_reader_following_the_cursor_misses_no_event_committed_out_of_order(self):
		entity_id = frappe.generate_hash(length=10)
		start = last_seq()
		frappe.db.commit()
		# A slow save draws its event's number first and commits last.
		slow = site_db_connector()()
		try:
			early, late = overtaken(slow, entity_id)
			ids = read_before_and_after(start, entity_id, slow.commit)
		finally:
			slow.close()
		self.assertEqual(sorted(ids), sorted([early.id, late.id]), "every committed event is read once")

	def test_an_event_deleted_meanwhile_does_not_hide_a_save_in_flight_from_the_cursor(self):
		# The daily purge deletes old events in transactions of its own. Read uncommitted, a row
		# it is deleting is already gone: one deleted row and one save in flight in the same
		# range leave the two counts equal, as if nothing were in flight.
		entity_id = frappe.generate_hash(length=10)
		start = last_seq()
		old = new_envelope("fabric_probe.saved", "Fabric Probe", frappe.generate_hash(length=10), "saved", {})
		record([old])
		frappe.db.commit()
		old_seq = frappe.db.get_value("Event Log", {"event_id": old.id}, "name")
		purge, slow = site_db_connector()(), site_db_connector()()
		try:
			with purge.cursor() as cursor:
				cursor.execute("DELETE FROM `tabEvent Log` WHERE name = %s", (old_seq,))
			early, late = overtaken(slow, entity_id)
			ids = read_before_and_after(start, entity_id, lambda: (slow.commit(), purge.rollback()))
		finally:
			slow.close()
			purge.close()
		self.assertEqual(sorted(ids), sorted([early.id, late.id]), "every committed event is read once")

	def test_an_unusable_reader_connection_is_replaced(self):
		from cauldron_fabric.api.events import _readers

		frappe.get_doc({"doctype": "ToDo", "description": "reader"}).insert()  # a row to page over
		events_api.list_events(limit=1)  # opens this thread's reader
		reader = _readers.by_site[frappe.local.site]
		reader.close()  # left unusable: InterfaceError on its next query, not OperationalError
		self.assertIsInstance(events_api.list_events(limit=1)["events"], list)
		self.assertIsNot(_readers.by_site[frappe.local.site], reader)

	def test_a_type_prefix_matches_underscores_literally(self):
		entity_id = frappe.generate_hash(length=10)
		record([new_envelope("fabric.probe.saved", "Fabric Probe", entity_id, "saved", {})])
		listed = events_api.list_events(event_type="fabric_probe.*", entity_id=entity_id)["events"]
		self.assertEqual(listed, [], "fabric_probe.* is not fabric.probe.*")
		listed = events_api.list_events(event_type="fabric.probe.*", entity_id=entity_id)["events"]
		self.assertEqual([e["envelope"]["type"] for e in listed], ["fabric.probe.saved"])


class TestRequeue(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")

	def test_event_ids_of_the_wrong_kind_are_a_validation_error_naming_them(self):
		# A JSON body can carry any value; each of these was a TypeError or an SQL error: HTTP 500.
		for value in (5, None, '[{"id": 1}]', "[[1]]"):
			with self.subTest(event_ids=value):
				with self.assertRaises(frappe.ValidationError) as refused:
					events_api.requeue(event_ids=value)
				self.assertIn("event_ids", str(refused.exception))
