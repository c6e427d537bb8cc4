"""The Event Log in a browser: the list's status indicators, and Requeue on a failed event's form."""

from __future__ import annotations

import json
import uuid

import frappe

from cauldron_fabric.emit.recorder import new_envelope, record
from cauldron_fabric.services.relay import run_relay_for
from cauldron_fabric.testing.rabbitmq import PASSWORD, SETTINGS_URL, RabbitMQ
from cauldron_fabric.tests.browser.desk import DeskCase
from cauldron_fabric.tests.utils import fabric_settings

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
		self.commit_until_the_end("Event Log", {"entity_id": entity_id})
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


class TestEventLogRequeue(EventLogCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		exchange = "fabric.browser." + uuid.uuid4().hex[:6]
		settings = fabric_settings(
			bootstrap_servers="",
			rabbitmq_url=SETTINGS_URL,
			rabbitmq_password=PASSWORD,
			rabbitmq_exchange=exchange,
		)
		settings.__enter__()
		cls.addClassCleanup(settings.__exit__, None, None, None)
		cls.rabbit = RabbitMQ()
		cls.addClassCleanup(cls.rabbit.close)
		cls.addClassCleanup(cls.rabbit.delete, (), (exchange,))
		cls.queue = cls.rabbit.bound_queue(exchange, "fabric_browser.#")

	def test_requeue_puts_a_failed_event_back_and_the_relay_publishes_it(self):
		_, (name,) = self.new_events("Failed")
		self.desk.open_form("Event Log", name)
		self.desk.click_button("Requeue")
		self.desk.alert("Requeued: the relay publishes it again")
		self.desk.wait_field_text("status", "Pending")
		self.desk.wait_without_button("Requeue")
		self.committed()
		self.assertEqual(stored(name), {"status": "Pending", "last_error": None})

		run_relay_for(max_seconds=30, stop_when_idle=True)
		self.committed()
		self.assertEqual(stored(name)["status"], "Published")
		event_id = frappe.db.get_value("Event Log", name, "event_id")
		published = [json.loads(body)["id"] for _, body in self.rabbit.drain(self.queue)]
		self.assertEqual(published, [event_id])

	def test_an_event_settled_since_the_form_opened_is_not_requeued_and_the_form_says_why(self):
		_, (name,) = self.new_events("Failed")
		self.desk.open_form("Event Log", name)
		# A relay retried it meanwhile (or another manager requeued it): Published now.
		frappe.db.set_value("Event Log", name, {"status": "Published", "last_error": None})
		frappe.db.commit()
		self.desk.click_button("Requeue")
		title, text = self.desk.message()
		self.assertEqual(title, "Not requeued")
		self.assertIn("This event is Published now; only Failed events can be requeued.", text)
		self.desk.close_message()
		self.desk.wait_field_text("status", "Published")
		self.desk.wait_without_button("Requeue")
		self.committed()
		self.assertEqual(stored(name), {"status": "Published", "last_error": None})

	def test_an_invalid_event_has_no_requeue_and_the_form_says_why(self):
		_, (name,) = self.new_events("Invalid")
		self.desk.open_form("Event Log", name)
		intro = self.desk.find(".form-message", "the form's explanation")
		self.assertIn("why it is Invalid", intro.text)
		self.assertIn("cannot be requeued", intro.text)
		self.assertIsNone(self.desk.visible(self.desk.button("Requeue")))
		self.committed()
		self.assertEqual(stored(name)["status"], "Invalid")
