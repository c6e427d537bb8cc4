"""The site's consumer against a real Kafka-protocol broker: approval requests in, decisions out.

Events go through the real consumer (consumer group, tracking in Processed Event, handlers from
the hooks as the handler user, dead letters as documents) and, for responses, the real relay.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import approvals as approvals_api
from cauldron_fabric.consume.requesting import close_requesters, site_breaker, site_requester
from cauldron_fabric.core.consumer import RequestTimeout
from cauldron_fabric.core.consumer.kafka_group import dead_letter_topic
from cauldron_fabric.core.consumer.messages import ATTEMPTS, DEAD_LETTER_REASON, ORIGIN_TOPIC
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.testing.events import document_event
from cauldron_fabric.testing.kafka_broker import produce, read_topic
from cauldron_fabric.testing.rabbitmq import RabbitMQ
from cauldron_fabric.tests.test_approval_support import (
	APPROVER,
	OUTSIDER,
	approval_requested,
	assignments,
	ensure_people,
	events_caused_by,
)
from cauldron_fabric.tests.test_consume_support import (
	consume,
	dead_letters,
	publish,
	relay_outbox,
	use_rabbitmq_for_class,
)
from cauldron_fabric.tests.utils import fabric_settings, start_broker

CHARGE = "fabric_consume_test.charge.created"
LEDGER = {"fixed": False}
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def charge(amount: int) -> Envelope:
	return document_event(
		"Charge",
		f"CH-{amount}",
		"created",
		{"amount": amount},
		type=CHARGE,
		source="urn:cauldron:billing",
		user=None,
		tenant=None,
	)


def book_charge(envelope, context):
	"""A handler that fails until the ledger is fixed, then writes one ToDo per charge."""
	if not LEDGER["fixed"]:
		raise RuntimeError(f"ledger closed for {envelope.data.entity_id}")
	frappe.get_doc({"doctype": "ToDo", "description": f"charge {envelope.id}"}).insert()


def group_name(label: str) -> str:
	return f"site-{label}-{frappe.generate_hash(length=6)}"


class TestConsumingIntoTheSite(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_people()
		start_broker(cls, consumer_max_attempts=2, handler_user="Administrator")
		cls.agent_topic = f"{cls.prefix}.agent"

	def setUp(self):
		frappe.set_user("Administrator")

	def fresh_topic(self) -> str:
		"""Returns a topic of this test alone (a new group reads a topic from its start)."""
		return f"{self.prefix}.{frappe.generate_hash(length=6)}"

	def test_a_consumed_request_becomes_one_approval_request_and_its_changes_carry_the_cause(self):
		event = approval_requested()
		publish(self.broker.bootstrap, self.agent_topic, [event, event])  # the second is a redelivery
		group = group_name("approvals")
		counts = consume(group)  # no topics: derived from the hooked handler's pattern
		self.assertEqual((counts.processed, counts.duplicates, counts.dead_lettered), (1, 1, 0))
		name = event.data.payload["requestId"]
		doc = frappe.get_doc("Approval Request", name)
		self.assertEqual(
			(doc.status, doc.correlation_id, doc.request_event_id),
			("Pending", event.metadata.correlation_id, event.id),
		)
		self.assertEqual(frappe.db.count("Approval Request", {"request_id": name}), 1)
		mark = frappe.get_all(
			"Processed Event",
			filters={"consumer_group": group, "event_id": event.id},
			fields=["origin_topic", "event_type"],
		)
		self.assertEqual(
			[(m.origin_topic, m.event_type) for m in mark], [(self.agent_topic, "agent.approval.requested")]
		)
		self.assertIn(APPROVER, assignments(name))
		caused = [e for e in events_caused_by(event.id) if e["type"] == "todo.created"]
		self.assertTrue(caused, "the handler's document changes carry the consumed event as their cause")
		self.assertEqual({e["metadata"]["correlationId"] for e in caused}, {event.metadata.correlation_id})

	def test_an_event_id_with_markup_is_a_dead_letter_not_a_processed_mark_desk_lists(self):
		# Processed Event lists the event id, written with SQL (no sanitizing save) and rendered by
		# Desk's list as HTML: any producer on a consumed topic could run script in an admin's browser.
		event, topic = approval_requested(), self.fresh_topic()
		event = replace(event, id='<img src=x onerror="alert(1)">')
		publish(self.broker.bootstrap, topic, [event])
		group = group_name("markup")
		counts = consume(group, [topic])
		self.assertEqual((counts.processed, counts.dead_lettered), (0, 1))
		self.assertFalse(frappe.get_all("Processed Event", filters={"consumer_group": group}))
		(letter,) = dead_letters(group)
		# Errors quote outside text, so the Dead Letter shows them with look-alike brackets.
		self.assertIn("'id' may not contain \u2039 or \u203a", letter["last_error"])
		self.assertFalse(frappe.db.exists("Approval Request", event.data.payload["requestId"]))

	def test_approving_a_consumed_request_publishes_approval_response_with_its_correlation_id(self):
		event, topic = approval_requested(), self.fresh_topic()
		publish(self.broker.bootstrap, topic, [event])
		consume(group_name("decisions"), [topic])
		frappe.set_user(APPROVER)
		approvals_api.approve(event.data.payload["requestId"], "Go ahead.")
		frappe.db.commit()
		frappe.set_user("Administrator")
		relay_outbox(self.broker.bootstrap, self.prefix + ".{domain}")

		def ours(messages):
			return [
				m
				for m in messages
				if json.loads(m.value())["data"]["payload"]["requestId"] == event.data.payload["requestId"]
			]

		messages = read_topic(
			self.broker.bootstrap, f"{self.prefix}.approval", 1, until=lambda got: bool(ours(got))
		)
		(message,) = ours(messages)
		body, headers = json.loads(message.value()), dict(message.headers())
		self.assertEqual(body["type"], "approval.response")
		self.assertEqual(body["metadata"]["correlationId"], event.metadata.correlation_id)
		self.assertEqual(headers["ce_correlationid"].decode(), event.metadata.correlation_id)
		self.assertEqual(body["metadata"]["causationId"], event.id)
		self.assertEqual(
			(body["data"]["payload"]["decision"], body["data"]["payload"]["comment"]),
			("approved", "Go ahead."),
		)

	def test_poison_and_failing_events_become_dead_letters_and_a_retried_letter_is_processed(self):
		topic, group = self.fresh_topic(), group_name("letters")
		invalid_request = approval_requested()
		del invalid_request.data.payload["approvers"]
		failing = charge(70)
		LEDGER["fixed"] = False
		publish(self.broker.bootstrap, topic, [b"{not json", invalid_request, failing])
		counts = consume(group, [topic], extra_handlers={CHARGE: book_charge})
		self.assertEqual((counts.dead_lettered, counts.retried, counts.processed), (3, 1, 0))
		letters = {row["log"]["reason"]: row for row in dead_letters(group)}
		self.assertEqual(set(letters), {"invalid-envelope", "schema-violation", "attempts-exhausted"})
		exhausted = letters["attempts-exhausted"]
		self.assertEqual(
			(exhausted.event_id, exhausted.attempts, exhausted.error_class),
			(failing.id, 2, "builtins.RuntimeError"),
		)
		self.assertEqual((exhausted.origin_topic, exhausted.log["broker"]), (topic, "kafka"))
		self.assertIn("approvers", letters["schema-violation"].last_error)
		self.assertFalse(frappe.db.exists("Approval Request", invalid_request.data.payload["requestId"]))
		on_bus = read_topic(self.broker.bootstrap, dead_letter_topic(group), 3)
		reasons = {dict(m.headers())[DEAD_LETTER_REASON].decode(): dict(m.headers()) for m in on_bus}
		self.assertEqual(set(reasons), set(letters))
		self.assertEqual(reasons["attempts-exhausted"][ATTEMPTS], b"2")
		self.assertEqual(reasons["invalid-envelope"][ORIGIN_TOPIC].decode(), topic)

		with self.assertRaisesRegex(frappe.ValidationError, "not an event"):
			frappe.get_doc("Dead Letter", letters["invalid-envelope"].name).retry()
		LEDGER["fixed"] = True
		frappe.get_doc("Dead Letter", exhausted.name).retry()
		frappe.db.commit()
		self.assertEqual(frappe.db.get_value("Dead Letter", exhausted.name, "status"), "Retried")
		counts = consume(group, [topic], extra_handlers={CHARGE: book_charge})
		self.assertEqual(counts.processed, 1)
		self.assertTrue(frappe.db.exists("ToDo", {"description": f"charge {failing.id}"}))
		self.assertTrue(
			frappe.db.exists("Processed Event", {"consumer_group": group, "event_id": failing.id})
		)

	def test_a_retried_letter_keeps_its_binary_key(self):
		# A producer's key need not be text: a retry under another key would land on another
		# partition than the entity's other events.
		from cauldron_fabric.core.consumer.kafka_group import retry_topic

		topic, group, key = self.fresh_topic(), group_name("binary-key"), b"\xff\x00charge\xfe"
		failing = charge(71)
		LEDGER["fixed"] = False
		produce(self.broker.bootstrap, topic, [failing], key=key)
		consume(group, [topic], extra_handlers={CHARGE: book_charge})
		(letter,) = [row for row in dead_letters(group) if row.event_id == failing.id]
		frappe.get_doc("Dead Letter", letter.name).retry()
		frappe.db.commit()

		def desk_copies(messages):  # the consumer's own retry copies say attempt 2
			return [
				m
				for m in messages
				if json.loads(m.value())["id"] == failing.id and dict(m.headers()).get(ATTEMPTS) == b"1"
			]

		messages = read_topic(self.broker.bootstrap, retry_topic(group, 1), 1, until=desk_copies)
		(copy,) = desk_copies(messages)
		self.assertEqual(copy.key(), key)

	def test_handlers_run_as_the_handler_user_with_its_permissions(self):
		event, topic = approval_requested(), self.fresh_topic()
		publish(self.broker.bootstrap, topic, [event])
		group = group_name("outsider")
		with fabric_settings(handler_user=OUTSIDER):
			counts = consume(group, [topic])
		self.assertEqual((counts.processed, counts.dead_lettered), (0, 1))
		self.assertFalse(frappe.db.exists("Approval Request", event.data.payload["requestId"]))
		(letter,) = dead_letters(group)
		self.assertEqual(letter.error_class, "cauldron_fabric.consume.handlers.HandlerRefused")
		self.assertIn(OUTSIDER, letter.last_error)
		self.assertEqual((letter.attempts, letter.log["reason"]), (1, "handler-refused"))


class TestConsumingFromRabbitMQ(FrappeTestCase):
	"""The same handlers behind RabbitMQ: the group's queue bound to the exchange by event type."""

	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_people()
		use_rabbitmq_for_class(cls, "fabricconsume", handler_user="Administrator", consumer_max_attempts=2)

	def test_a_request_published_to_the_exchange_becomes_an_approval_request(self):
		group = group_name("rabbit")
		self.addCleanup(delete_rabbitmq_topology, self.exchange, group)
		self.assertEqual(consume(group, broker="rabbitmq").processed, 0)  # declares and binds the queue
		event = approval_requested()
		rabbit = RabbitMQ(RABBITMQ_URL)
		for _ in range(2):  # the second is a redelivery
			rabbit.publish(self.exchange, event.type, event.to_json().encode())
		rabbit.close()
		counts = consume(group, broker="rabbitmq")
		self.assertEqual((counts.processed, counts.duplicates), (1, 1))
		self.assertEqual(
			frappe.db.get_value("Approval Request", event.data.payload["requestId"], "status"), "Pending"
		)
		self.assertTrue(frappe.db.exists("Processed Event", {"consumer_group": group, "event_id": event.id}))

	def test_the_lag_counts_the_queue_and_the_retries_waiting_in_delay_queues(self):
		from cauldron_fabric.api import consumers as consumers_api

		group = group_name("rabbit-lag")
		self.addCleanup(delete_rabbitmq_topology, self.exchange, group)
		consume(group, broker="rabbitmq")  # declares the group's queue and its delay queue
		rabbit = RabbitMQ(RABBITMQ_URL)
		for _ in range(2):
			rabbit.publish(self.exchange, "agent.approval.requested", approval_requested().to_json().encode())
		rabbit.publish("", f"{group}.retry.1000ms", approval_requested().to_json().encode())  # a retry
		rabbit.close()
		# The retry comes back to the group's queue after its 1 s delay: 3 either way, once the
		# broker has routed the three (publishes without confirms reach the queues a moment later).
		deadline = time.monotonic() + 10
		lag = consumers_api.get_lag(group, broker="rabbitmq")
		while lag["lag"] < 3 and time.monotonic() < deadline:
			time.sleep(0.1)
			lag = consumers_api.get_lag(group, broker="rabbitmq")
		self.assertEqual(lag["lag"], 3, lag)
		self.assertIn(f"{group}.retry.1000ms", {p["topic"] for p in lag["partitions"]})

	def test_the_lag_counts_retries_left_in_the_delay_queue_of_a_higher_attempts_setting(self):
		# With 6 attempts the fifth retry waits 256 s; lowered to 2 (this class), the lag looked
		# only at the 1 s queue, though the retries still come back from the 256 s one.
		from cauldron_fabric.api import consumers as consumers_api
		from cauldron_fabric.core.consumer.rabbitmq_queues import declare_group_queues

		group, earlier = group_name("rabbit-old-lag"), [1.0, 4.0, 16.0, 64.0, 256.0]
		self.addCleanup(delete_rabbitmq_topology, self.exchange, group, earlier)
		rabbit = RabbitMQ(RABBITMQ_URL)
		declare_group_queues(rabbit.channel, group, self.exchange, ["agent.#"], earlier)
		rabbit.publish("", f"{group}.retry.256000ms", approval_requested().to_json().encode())
		rabbit.close()
		lag = consumers_api.get_lag(group, broker="rabbitmq")
		self.assertEqual(lag["lag"], 1, lag)
		self.assertIn(f"{group}.retry.256000ms", {p["topic"] for p in lag["partitions"]})

	def test_a_request_that_expires_unanswered_is_counted_and_dropped_not_served_late(self):
		# A request no responder took in time expired into <group>.dead: never read, never
		# shown, one more message there for every timeout.
		group = group_name("rabbit-expired")
		self.addCleanup(delete_rabbitmq_topology, self.exchange, group)
		self.addCleanup(close_requesters)
		consume(group, broker="rabbitmq")  # declares and binds the queue; then no responder runs
		event = approval_requested()
		self.addCleanup(site_breaker().store.reset, event.type)
		with self.assertRaises(RequestTimeout):
			site_requester("rabbitmq").request(event.type, event.data.payload, 0.3)
		rabbit = RabbitMQ(RABBITMQ_URL)
		self.addCleanup(rabbit.close)
		deadline = time.monotonic() + 10
		while rabbit.channel.queue_declare(group, passive=True).method.message_count:
			self.assertLess(time.monotonic(), deadline, "the broker never expired the request")
			time.sleep(0.1)
		counts = consume(group, broker="rabbitmq")
		self.assertEqual((counts.expired, counts.processed, counts.dead_lettered), (1, 0, 0))
		self.assertFalse(frappe.db.exists("Approval Request", event.data.payload["requestId"]))
		self.assertEqual(rabbit.drain(f"{group}.dead"), [], "dead letters keep only what failed")
		self.assertEqual(rabbit.drain(f"{group}.expired"), [])


def delete_rabbitmq_topology(exchange: str, group: str, delays: list[float] = [1.0]) -> None:  # noqa: B006
	rabbit = RabbitMQ(RABBITMQ_URL)
	retries = tuple(f"{group}.retry.{int(d * 1000)}ms" for d in delays)
	rabbit.delete((group, f"{group}.dead", f"{group}.expired", *retries), (exchange, f"{exchange}.dlx"))
	rabbit.close()
