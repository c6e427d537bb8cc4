"""Request-reply on each real bus: round trips, load balancing, timeouts, and a circuit in Redis."""

import threading
import time
import uuid

import pytest
from consumer_buses import bus_fixture  # noqa: F401

from cauldron_fabric.core.consumer import (
	CircuitBreaker,
	CircuitOpen,
	CircuitPolicy,
	Consumer,
	ConsumerOptions,
	HandlerTable,
	MemoryTracking,
	RequestTimeout,
	ResponderFailed,
	open_requester,
)
from conftest import redis_circuits

PRICE = "quote.price.requested"


def pricing_handler(name):
	"""Answers price requests; stays silent when asked to, fails when asked to."""

	def handle(envelope, context):
		payload = envelope.data.payload
		if payload.get("silent"):
			return
		if payload.get("fail"):
			context.fail(LookupError(f"no price list for {payload['sku']}"))
			return
		context.reply({"price": payload["qty"] * 2.5, "responder": name})

	return handle


class Responders:
	"""Members of one responder group, each consuming in its own thread."""

	def __init__(self, bus, channel, group, names):
		self.stop, self.threads, self.sources = threading.Event(), [], []
		options = ConsumerOptions(group=group, max_attempts=2, poll_timeout=0.05)
		for name in names:
			source = bus.source(options, channel)
			consumer = Consumer(
				source,
				HandlerTable.from_mapping({PRICE: pricing_handler(name)}),
				MemoryTracking().session(),
				options,
			)
			thread = threading.Thread(target=self._run, args=(consumer,), daemon=True)
			thread.start()
			self.threads.append(thread)
			self.sources.append(source)

	def _run(self, consumer):
		consumer.run(self.stop.is_set)
		consumer.close()

	def ready(self, timeout=30):
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			if all(getattr(s, "assigned", True) for s in self.sources):
				return True
			time.sleep(0.1)
		return False

	def close(self):
		self.stop.set()
		for thread in self.threads:
			thread.join(15)


@pytest.fixture
def circuits():
	with redis_circuits() as open_store:
		yield open_store


def test_request_reply_balances_times_out_and_breaks_the_circuit(bus, circuits):
	channel, group = bus.channel(), f"pricing-{uuid.uuid4().hex[:6]}"
	responders = Responders(bus, channel, group, ["east", "west"])
	policy = CircuitPolicy(failure_threshold=2, window_seconds=30, open_seconds=1.0, probe_seconds=5)
	breaker = CircuitBreaker(circuits(), policy)
	options = {"exchange": channel} if bus.name == "amqp" else {"reply_topic": f"{channel}.replies"}
	requester = open_requester(bus.url, source="urn:test:requester", breaker=breaker, broker_options=options)
	target = channel if bus.name == "kafka" else PRICE
	try:
		assert responders.ready(), "the responders never got partitions"
		replies = [requester.request(PRICE, {"sku": "S-1", "qty": 4}, 10, target=target) for _ in range(12)]
		first = replies[0]
		assert first.payload["price"] == 10.0 and first.envelope.type == "quote.price.requested.reply"
		assert first.envelope.metadata.causation_id == first.request.id
		assert first.envelope.metadata.correlation_id == first.request.metadata.correlation_id
		assert {r.payload["responder"] for r in replies} == {"east", "west"}, "the group shares the requests"

		with pytest.raises(ResponderFailed, match="no price list for S-9"):
			requester.request(PRICE, {"sku": "S-9", "qty": 1, "fail": True}, 10, target=target)
		started = time.monotonic()
		with pytest.raises(
			RequestTimeout, match=r"No reply to 'quote.price.requested' \(correlation id .*within 0.5 s"
		):
			requester.request(PRICE, {"sku": "S-2", "qty": 1, "silent": True}, 0.5, target=target)
		assert 0.45 < time.monotonic() - started < 3

		started = time.monotonic()
		with pytest.raises(CircuitOpen, match="is open after 2 failure"):
			requester.request(PRICE, {"sku": "S-1", "qty": 1}, 10, target=target)
		assert time.monotonic() - started < 0.2, "an open circuit refuses at once"
		other_worker = CircuitBreaker(circuits(), policy)
		assert other_worker.state(target).state == "open", "every worker sees the open circuit"

		time.sleep(1.1)
		probe = requester.request(PRICE, {"sku": "S-1", "qty": 2}, 10, target=target)
		assert probe.payload["price"] == 5.0
		assert other_worker.state(target).state == "closed", "a successful probe closes the circuit"
	finally:
		requester.close()
		responders.close()
