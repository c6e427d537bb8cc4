"""Request-reply through the site's API against a real broker, with circuits in Redis shown in Desk."""

from __future__ import annotations

import json
import threading
import time

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import requests as requests_api
from cauldron_fabric.cauldron_fabric.doctype.fabric_circuit.fabric_circuit import FabricCircuit
from cauldron_fabric.consume.requesting import close_requesters, site_breaker
from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, MemoryTracking, open_source
from cauldron_fabric.tests.test_approval_support import OUTSIDER, ensure_people
from cauldron_fabric.tests.test_consume_support import FAST_JOIN
from cauldron_fabric.tests.utils import fabric_settings, start_broker

PRICE = "quote.price.requested"


def quote(envelope, context):
	"""A pricing service: answers unless told to stay silent."""
	if not envelope.data.payload.get("silent"):
		context.reply({"price": envelope.data.payload["qty"] * 2.5})


class TestRequestReplyApi(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		ensure_people()
		start_broker(
			cls,
			request_timeout_seconds=5,
			circuit_failure_threshold=2,
			circuit_window_seconds=60,
			circuit_open_seconds=1,
		)
		cls.target = f"{cls.prefix}.quote"  # where the topic naming rule sends quote.* requests
		options = ConsumerOptions(group=f"{cls.prefix}-pricing", poll_timeout=0.05)
		source = open_source(
			f"kafka://{cls.broker.bootstrap}", options, [cls.target], broker_options=FAST_JOIN
		)
		responder = Consumer(
			source, HandlerTable.from_mapping({PRICE: quote}), MemoryTracking().session(), options
		)
		stop = threading.Event()
		thread = threading.Thread(target=lambda: (responder.run(stop.is_set), responder.close()), daemon=True)
		thread.start()
		cls.addClassCleanup(thread.join, 15)
		cls.addClassCleanup(stop.set)
		cls.addClassCleanup(close_requesters)
		cls.addClassCleanup(lambda: site_breaker().store.reset(cls.target))
		deadline = time.monotonic() + 30
		while not source.assigned and time.monotonic() < deadline:
			time.sleep(0.1)

	def setUp(self):
		frappe.set_user("Administrator")
		site_breaker().store.reset(self.target)

	def test_a_request_gets_its_reply_through_the_api(self):
		result = requests_api.send_request(PRICE, json.dumps({"sku": "S-1", "qty": 3}))
		reply = result["reply"]
		self.assertEqual(reply["type"], "quote.price.requested.reply")
		self.assertEqual(reply["data"]["payload"], {"price": 7.5})
		self.assertEqual(reply["metadata"]["causationId"], result["correlationId"])
		self.assertEqual(result["request"]["metadata"]["userId"], "Administrator")
		self.assertLess(result["elapsedSeconds"], 5)

	def test_timeouts_open_the_circuit_which_desk_shows_and_a_probe_closes_it(self):
		silent = json.dumps({"sku": "S-2", "qty": 1, "silent": True})
		for _ in range(2):
			with self.assertRaises(requests_api.RequestTimedOut) as timed_out:
				requests_api.send_request(PRICE, silent, timeout=0.5)
		self.assertIn("No reply to 'quote.price.requested'", str(timed_out.exception))
		self.assertEqual(requests_api.RequestTimedOut.http_status_code, 504)
		started = time.monotonic()
		with self.assertRaisesRegex(requests_api.TargetUnavailable, "is open after 2 failure"):
			requests_api.send_request(PRICE, json.dumps({"sku": "S-1", "qty": 1}))
		self.assertLess(time.monotonic() - started, 0.5, "an open circuit answers at once")

		circuit = frappe.get_doc("Fabric Circuit", self.target)
		self.assertEqual((circuit.state, circuit.failures), ("open", 2))
		self.assertIsNotNone(circuit.retry_at)
		listed = FabricCircuit.get_list(frappe._dict(filters=[["Fabric Circuit", "state", "=", "open"]]))
		self.assertIn(self.target, [row.name for row in listed])
		self.assertIn(self.target, [c["target"] for c in requests_api.get_circuits()["circuits"]])

		time.sleep(1.1)
		probe = requests_api.send_request(PRICE, json.dumps({"sku": "S-1", "qty": 2}))
		self.assertEqual(probe["reply"]["data"]["payload"], {"price": 5.0})
		self.assertEqual(frappe.get_doc("Fabric Circuit", self.target).state, "closed")

	def test_values_of_the_wrong_kind_are_validation_errors_naming_them(self):
		# A JSON body can carry any kind of value where a text is expected.
		cases = [({"type": 123}, "type"), ({"type": PRICE, "target": ["a", "b"]}, "target")]
		for params, name in cases:
			with self.subTest(params=params):
				with self.assertRaises(frappe.ValidationError) as refused:
					requests_api.send_request(**{"data": "{}", "timeout": 0.5, **params})
				self.assertIn(name, str(refused.exception))

	def test_a_target_with_markup_is_refused_before_it_becomes_a_circuit_desk_lists(self):
		# The Fabric Circuit list shows each target as Desk renders Data: as HTML. A target
		# quoted by a failed request would otherwise run its markup in an admin's browser.
		target = "<img src=x onerror=alert(1)>"
		self.addCleanup(site_breaker().store.reset, target)
		with self.assertRaisesRegex(frappe.ValidationError, "target may not contain < or >"):
			requests_api.send_request(PRICE, "{}", timeout=0.5, target=target)
		self.assertNotIn(target, [c["target"] for c in requests_api.get_circuits()["circuits"]])

	def test_types_only_the_site_emits_cannot_be_sent_as_requests(self):
		# Requests go out under the site's source: an approval.response sent this way would
		# decide a request its own requester may not decide.
		for event_type in ("approval.response", "todo.updated", "subscription.test"):
			with self.subTest(event_type=event_type):
				with self.assertRaisesRegex(frappe.ValidationError, "only"):
					requests_api.send_request(event_type, "{}", timeout=0.5)

	def test_a_manager_resets_a_circuit_from_desk(self):
		breaker = site_breaker()
		for _ in range(2):
			breaker.failed(self.target)
		circuit = frappe.get_doc("Fabric Circuit", self.target)
		self.assertEqual(circuit.state, "open")
		circuit.reset()
		# Closed and forgotten: no longer listed, and its form is not found, like a target that
		# never failed (a mistyped link used to open a made-up closed circuit).
		self.assertEqual(site_breaker().state(self.target).state, "closed")
		self.assertNotIn(self.target, [row.name for row in FabricCircuit.get_list(frappe._dict())])
		for target in (self.target, "never-failed.request"):
			with self.assertRaisesRegex(frappe.DoesNotExistError, "no request or webhook to that target has failed"):
				frappe.get_doc("Fabric Circuit", target)

	def test_requests_need_a_manager_and_well_formed_input(self):
		with self.assertRaisesRegex(frappe.ValidationError, "dot-separated lower-case words"):
			requests_api.send_request("Quote Price", "{}")
		with self.assertRaisesRegex(frappe.ValidationError, "data must be a JSON object"):
			requests_api.send_request(PRICE, "[1, 2]")
		with self.assertRaisesRegex(frappe.ValidationError, "timeout must be between"):
			requests_api.send_request(PRICE, "{}", timeout=0)
		frappe.set_user(OUTSIDER)
		calls = (
			lambda: requests_api.send_request(PRICE, "{}"),
			requests_api.get_circuits,
			lambda: FabricCircuit.get_list(frappe._dict()),
		)
		for call in calls:
			with self.assertRaises(frappe.PermissionError):
				call()


class TestRequestWithoutBroker(FrappeTestCase):
	def test_a_request_with_no_broker_configured_is_503_saying_what_to_set(self):
		# It was a 417 "Bad request" about consuming: the caller could do nothing about it.
		frappe.set_user("Administrator")
		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			with self.assertRaises(requests_api.TargetUnavailable) as refused:
				requests_api.send_request(PRICE, json.dumps({"sku": "S-1", "qty": 1}))
		message = str(refused.exception)
		self.assertIn("No Kafka or RabbitMQ connection is configured", message)
		self.assertIn("send requests over", message)
		self.assertEqual(requests_api.TargetUnavailable.http_status_code, 503)


class TestCircuitList(FrappeTestCase):
	def setUp(self):
		frappe.set_user("Administrator")
		suffix = frappe.generate_hash(length=6)
		self.healthy, self.failing = f"circuit-ok-{suffix}", f"circuit-down-{suffix}"
		breaker = site_breaker()
		breaker.succeeded(self.healthy)
		for _ in range(breaker.policy.failure_threshold):
			breaker.failed(self.failing)
		for target in (self.healthy, self.failing):
			self.addCleanup(breaker.store.reset, target)

	def listed(self, *filters) -> set[str]:
		rows = frappe.get_list("Fabric Circuit", filters=list(filters), fields=["name"], limit_page_length=0)
		return {row.name for row in rows} & {self.healthy, self.failing}

	def test_the_list_applies_each_filter_with_its_operator(self):
		self.assertEqual(self.listed(["state", "=", "open"]), {self.failing})
		self.assertEqual(self.listed(["state", "!=", "open"]), {self.healthy}, "!= is not =")
		self.assertEqual(self.listed(["state", "not in", ["open", "half_open"]]), {self.healthy})
		self.assertEqual(self.listed(["target", "=", self.healthy]), {self.healthy})
		self.assertEqual(self.listed(["target", "like", "circuit-down-%"]), {self.failing})
