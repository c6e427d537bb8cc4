"""The Event Log in a browser: the list's status indicators."""

from __future__ import annotations

import frappe

from cauldron_fabric.emit.recorder import new_envelope, record
from cauldron_fabric.tests.browser.desk import DeskCase

EVENT_TYPE = "fabric_browser.checked"
# The indicator colour of each status the Event Log has (the states in event_log.json).
INDICATORS = {
	"Pending": "orange",
	"Published": "green",
	"Recorded": "blue",
	"Failed": "red",
	"Invalid": "purple",
}


def stored(name: str) -> dict:
	"""Returns an event's delivery status as committed."""
	return frappe.db.get_value("Event Log", name, ["status", "last_error"], as_dict=True)


class EventLogCase(DeskCase):
	def new_events(self, *statuses: str) -> tuple[str, list[str]]:
		"""Records one event per status, all of one new entity id (committed); deleted after.

		Returns the entity id and the events' names. The outbox writes each as Pending or
		Recorded; the other statuses (Published, Failed or Invalid with a reason) are then
		written into the row as the relay or the schema check would.
		"""
		entity_id = "browser-" + frappe.generate_hash(length=8)
		record([new_envelope(EVENT_TYPE, "Fabric Browser", entity_id, "checked", {}) for _ in statuses])
		names = frappe.get_all(
			"Event Log", filters={"entity_id": entity_id}, order_by="name asc", pluck="name"
		)
		for name, status in zip(names, statuses, strict=True):
			error = f"why it is {status}" if status in ("Failed", "Invalid") else None
			frappe.db.sql(
				"UPDATE `tabEvent Log` SET status = %s, last_error = %s WHERE name = %s",
				(status, error, name),
			)
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "Event Log", {"entity_id": entity_id})
		self.addCleanup(self.committed)
		return entity_id, [str(name) for name in names]


class TestEventLogList(EventLogCase):
	def test_each_status_has_its_indicator_and_clicking_one_shows_only_that_status(self):
		entity_id, names = self.new_events(*INDICATORS, "Failed")
		self.desk.open_list("Event Log", entity_id=entity_id)
		for name in names:
			status = stored(name)["status"]
			pill = self.desk.row_indicator(name)
			self.assertEqual(pill.text, status)
			self.assertIn(INDICATORS[status], pill.get_attribute("class").split(), status)

		self.desk.row_indicator(names[-1]).click()
		failed = frappe.get_all(
			"Event Log", filters={"entity_id": entity_id, "status": "Failed"}, pluck="name"
		)
		self.assertEqual(len(failed), 2)
		self.desk.wait(
			lambda _: sorted(self.desk.list_names()) == sorted(str(name) for name in failed),
			"the list to show only the Failed events",
		)
		applied = self.desk.driver.execute_script("return cur_list.get_filters_for_args()")
		self.assertIn(["Event Log", "status", "=", "Failed"], [f[:4] for f in applied])
