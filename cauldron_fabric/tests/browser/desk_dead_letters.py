"""Dead Letters in a browser: Retry and Discard from the form, a bulk Discard from the list."""

from __future__ import annotations

import json

import frappe

from cauldron_fabric.core.consumer.kafka_group import retry_topic
from cauldron_fabric.testing.kafka_broker import read_topic
from cauldron_fabric.tests.browser.desk import USER, DeskCase
from cauldron_fabric.tests.test_desk_actions import consumer_dead_letter
from cauldron_fabric.tests.utils import fabric_settings, start_broker


def stored(name: str) -> dict:
	"""Returns a letter's resolution as committed."""
	return frappe.db.get_value(
		"Dead Letter", name, ["status", "resolved_by", "resolution_note"], as_dict=True
	)


class TestDeadLetterForm(DeskCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		start_broker(cls, prefix="fabricbrowser")

	def new_letter(self) -> str:
		"""Files a consumer's Dead Letter (committed, so the web server sees it); deleted after."""
		letter = consumer_dead_letter()
		self.commit_until_the_end("Dead Letter", {"name": letter.name})
		return letter.name

	def test_retry_sends_the_event_back_to_its_group_and_shows_the_letter_retried(self):
		name = self.new_letter()
		letter = frappe.get_doc("Dead Letter", name)
		self.desk.open_form("Dead Letter", name)
		self.desk.click_button("Retry")
		self.desk.alert(f"Sent back to consumer group {letter.consumer_group}")
		self.desk.wait_field_text("status", "Retried")
		self.desk.wait_without_button("Retry")
		self.desk.wait_without_button("Discard")
		self.committed()
		self.assertEqual(
			stored(name), {"status": "Retried", "resolved_by": USER, "resolution_note": "Retried"}
		)
		(copy,) = read_topic(self.broker.bootstrap, retry_topic(letter.consumer_group, 1), 1)
		self.assertEqual(json.loads(copy.value())["id"], letter.event_id)

	def test_retry_without_a_broker_says_what_to_set_and_the_letter_stays_dead(self):
		name = self.new_letter()
		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			self.desk.open_form("Dead Letter", name)
			self.desk.click_button("Retry")
			title, text = self.desk.message()
		self.assertEqual(title, "Cannot retry")
		self.assertIn("Fabric Settings", text)
		self.desk.close_message()
		self.assertEqual(self.desk.field_text("status"), "Dead")
		self.committed()
		self.assertEqual(stored(name)["status"], "Dead")

	def test_discard_asks_why_and_keeps_the_answer_with_the_letter(self):
		name = self.new_letter()
		self.desk.open_form("Dead Letter", name)
		self.desk.click_button("Discard")
		self.desk.fill_dialog("note", "ledger retired; nothing to post")
		self.desk.confirm_dialog()
		self.desk.wait_field_text("status", "Discarded")
		self.desk.wait_without_button("Retry")
		# Shown at once: before, the Resolution section stayed collapsed, the answer hidden.
		self.desk.wait_field_text("resolution_note", "ledger retired; nothing to post")
		self.assertIsNotNone(self.desk.visible(self.desk.field("resolved_by")))
		self.committed()
		self.assertEqual(
			stored(name),
			{
				"status": "Discarded",
				"resolved_by": USER,
				"resolution_note": "ledger retired; nothing to post",
			},
		)


class TestDeadLetterList(DeskCase):
	def new_letters(self, count: int) -> tuple[str, list[str]]:
		"""Files ``count`` letters of a consumer group of their own (committed); deleted after."""
		group = "browser-" + frappe.generate_hash(length=8)
		names = []
		for _ in range(count):
			name = consumer_dead_letter().name
			# The letter refuses saves (Retry and Discard only); the group only narrows the list.
			frappe.db.set_value("Dead Letter", name, "consumer_group", group)
			names.append(name)
		self.commit_until_the_end("Dead Letter", {"name": ("in", names)})
		return group, names

	def test_discarding_the_selected_letters_reports_them_done_and_shows_them_discarded(self):
		group, names = self.new_letters(2)
		self.desk.open_list("Dead Letter", consumer_group=group)
		for name in names:
			self.assertEqual(self.desk.row_indicator(name).text, "Dead")
			self.desk.check_row(name)
		self.desk.list_action("Discard")
		title, text = self.desk.message()
		self.assertEqual((title, text.strip()), ("Discard", "2 done."))
		self.desk.close_message()
		for name in names:
			self.desk.wait(
				lambda _, name=name: self.desk.row_indicator(name).text == "Discarded",
				f"the list to show {name} Discarded",
			)
		self.committed()
		self.assertEqual({stored(name)["status"] for name in names}, {"Discarded"})
		self.assertEqual({stored(name)["resolved_by"] for name in names}, {USER})

	def test_a_retry_the_broker_refuses_lists_each_reason_once_with_its_letters(self):
		# With no broker set every letter is refused alike: one line for the reason, naming them,
		# not one line per letter (a bulk Retry during an outage refuses hundreds).
		group, names = self.new_letters(3)
		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			self.desk.open_list("Dead Letter", consumer_group=group)
			for name in names:
				self.desk.check_row(name)
			self.desk.list_action("Retry")
			title, text = self.desk.message()
		self.desk.close_message()
		lines = text.strip().splitlines()
		self.assertEqual((title, lines[0]), ("Retry", "0 done."))
		self.assertEqual(len(lines), 2, text)
		self.assertTrue(lines[1].startswith("3: "), text)
		self.assertIn("Fabric Settings", lines[1])
		self.assertTrue(all(name in lines[1] for name in names), text)
		self.committed()
		self.assertEqual({stored(name)["status"] for name in names}, {"Dead"})
