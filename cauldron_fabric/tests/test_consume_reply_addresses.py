"""The site's responders reply only to the fabric's reply topic and to Fabric Settings' Other reply addresses.

A request names its own reply address: one naming an event topic would have a trusted responder
write a site-signed envelope there. Real Kafka-protocol broker, the site's real consumer.
"""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.core.consumer.messages import CORRELATION_ID, REPLY_ADDRESS_REFUSED, REPLY_TO
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.testing.kafka_broker import create_topic, produce, written_before_sentinel
from cauldron_fabric.tests.test_consume import CHARGE, charge, group_name
from cauldron_fabric.tests.test_consume_support import consume, dead_letters
from cauldron_fabric.tests.utils import fabric_settings, start_broker


def book_and_reply(envelope, context):
	"""Inserts a ToDo for the request and replies with its name."""
	todo = frappe.get_doc({"doctype": "ToDo", "description": f"reply-test {envelope.id}"}).insert()
	context.reply({"todo": todo.name})


class TestSiteReplyAddresses(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		start_broker(cls, handler_user="Administrator")

	def setUp(self):
		frappe.set_user("Administrator")
		self.topic = f"{self.prefix}.{frappe.generate_hash(length=6)}"

	def send_request(self, request: Envelope, reply_to: str) -> None:
		create_topic(self.broker.bootstrap, reply_to, 1)
		headers = [(REPLY_TO, reply_to), (CORRELATION_ID, request.id)]
		produce(self.broker.bootstrap, self.topic, [request], key=b"k", headers=headers)

	def written_to(self, topic: str) -> list[bytes]:
		"""Returns the bodies written to ``topic`` so far."""
		return written_before_sentinel(self.broker.bootstrap, topic)

	def booked(self, request: Envelope) -> list[str]:
		return frappe.get_all("ToDo", filters={"description": f"reply-test {request.id}"}, pluck="name")

	def test_a_request_naming_an_event_topic_as_reply_address_is_a_dead_letter_with_no_effect(self):
		request, victim = charge(1), f"{self.prefix}.billing"  # an event topic others consume
		self.send_request(request, victim)
		group = group_name("refused")
		counts = consume(group, [self.topic], extra_handlers={CHARGE: book_and_reply})
		self.assertEqual((counts.processed, counts.dead_lettered), (0, 1))
		self.assertEqual(self.booked(request), [], "the handler never ran")
		self.assertFalse(frappe.get_all("Processed Event", filters={"consumer_group": group}))
		self.assertEqual(self.written_to(victim), [], "nothing was written where the request pointed")
		(letter,) = dead_letters(group)
		self.assertEqual((letter["event_id"], letter["log"]["reason"]), (request.id, REPLY_ADDRESS_REFUSED))
		self.assertIn(repr(victim), letter["last_error"])
		self.assertIn("Fabric Settings → Other reply addresses", letter["last_error"])

	def test_a_reply_address_listed_in_fabric_settings_gets_the_reply(self):
		request, listed = charge(2), f"{self.prefix}.partner.replies"
		self.send_request(request, listed)
		with fabric_settings(allowed_reply_addresses=f"  \nnothing.here\n{self.prefix}.*.replies\n"):
			self.assertEqual(
				frappe.db.get_single_value("Fabric Settings", "allowed_reply_addresses"),
				f"nothing.here\n{self.prefix}.*.replies",
				"blank lines and spaces are dropped on save",
			)
			counts = consume(group_name("listed"), [self.topic], extra_handlers={CHARGE: book_and_reply})
		self.assertEqual((counts.processed, counts.dead_lettered), (1, 0))
		(todo,) = self.booked(request)
		(reply,) = self.written_to(listed)
		self.assertEqual(Envelope.from_json(reply).data.payload, {"todo": todo})

	def test_a_reply_address_with_a_space_is_refused_on_save(self):
		self.addCleanup(frappe.db.rollback)  # were it saved, the next commit would keep it
		settings = frappe.get_single("Fabric Settings")
		settings.allowed_reply_addresses = "billing replies"
		with self.assertRaisesRegex(frappe.ValidationError, "no reply address.*without spaces"):
			settings.save(ignore_permissions=True)
