"""Request-reply on each real bus: round trips, load balancing, timeouts, and a circuit in Redis."""

import signal
import threading
import time
import uuid

import pytest
from consumer_buses import bus_fixture  # noqa: F401
from request_responders import PRICE, Responders

from cauldron_fabric.core.consumer import (
	CircuitBreaker,
	CircuitOpen,
	CircuitPolicy,
	RequestTimeout,
	ResponderFailed,
	open_requester,
)
from cauldron_fabric.core.errors import ConfigurationError
from conftest import redis_circuits


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


def test_replies_are_kept_with_the_mark_up_to_the_limit_and_larger_ones_are_only_sent(bus):
	channel, group = bus.channel(), f"pricing-{uuid.uuid4().hex[:6]}"
	responders = Responders(bus, channel, group, ["east"], max_kept_replies_bytes=2000)
	options = {"exchange": channel} if bus.name == "amqp" else {"reply_topic": f"{channel}.replies"}
	requester = open_requester(bus.url, source="urn:test:requester", broker_options=options)
	target = channel if bus.name == "kafka" else PRICE
	try:
		assert responders.ready(), "the responder never got partitions"
		small = requester.request(PRICE, {"sku": "S-1", "qty": 1, "note": "n" * 100}, 10, target=target)
		large = requester.request(PRICE, {"sku": "S-1", "qty": 1, "note": "n" * 3000}, 10, target=target)
	finally:
		requester.close()
		responders.close()
	assert len(large.payload["note"]) == 3000, "a reply over the limit is still sent"
	kept = responders.tracking.replies
	assert kept[(group, small.request.id)] == [small.envelope]
	assert (group, large.request.id) not in kept and (
		group,
		large.request.id,
	) in responders.tracking.processed


def test_a_request_to_the_reply_topic_is_refused_before_it_can_answer_itself(kafka, circuits):
	# The request carries its correlation id like a reply does: sent to the reply topic, the
	# requester would read it back as its own answer.
	replies = f"replies.{uuid.uuid4().hex[:6]}"
	breaker = CircuitBreaker(circuits(), CircuitPolicy(failure_threshold=1))
	requester = open_requester(
		kafka.url, source="urn:test:requester", breaker=breaker, broker_options={"reply_topic": replies}
	)
	try:
		with pytest.raises(ConfigurationError, match="reply topic, where no responder listens"):
			requester.request(PRICE, {"sku": "S-1"}, 5, target=replies)
		assert breaker.state(replies).state == "closed", "a refused target is not a failure of the circuit"
	finally:
		requester.close()


class JobTimeout(Exception):
	"""What a job runner's time limit raises inside the job (RQ's JobTimeoutException is no FabricError)."""


def open_circuit(kafka, circuits, policy):
	"""Returns a requester to a target nobody answers, whose circuit one timeout has just opened."""
	target = f"silent.{uuid.uuid4().hex[:6]}"
	breaker = CircuitBreaker(circuits(), policy)
	requester = open_requester(
		kafka.url,
		source="urn:test:requester",
		breaker=breaker,
		broker_options={"reply_topic": f"{target}.replies"},
	)
	with pytest.raises(RequestTimeout):
		requester.request(PRICE, {"sku": "S-1"}, 0.3, target=target)
	assert breaker.state(target).state == "open"
	return requester, breaker, target


def test_a_probe_stopped_by_an_error_of_any_kind_opens_the_circuit_again(kafka, circuits):
	# A job's time limit strikes while its request is the circuit's probe. Only FabricErrors
	# counted: the probe ended without a word, and the circuit stayed half-open, refusing every
	# other call until the probe's window ran out.
	policy = CircuitPolicy(failure_threshold=1, window_seconds=30, open_seconds=0.5, probe_seconds=30)
	requester, breaker, target = open_circuit(kafka, circuits, policy)

	def time_limit(signum, frame):
		raise JobTimeout("the job ran past its time limit")

	previous = signal.signal(signal.SIGALRM, time_limit)
	try:
		time.sleep(0.6)
		signal.setitimer(signal.ITIMER_REAL, 0.5)
		with pytest.raises(JobTimeout):
			requester.request(PRICE, {"sku": "S-1"}, 10, target=target)
		state = breaker.state(target)
		assert state.state == "open", f"the interrupted probe left the circuit {state.state}"
	finally:
		signal.setitimer(signal.ITIMER_REAL, 0)
		signal.signal(signal.SIGALRM, previous)
		requester.close()


def test_a_probe_waiting_longer_than_the_probe_window_is_still_the_only_probe(kafka, circuits):
	# The probe window is the site's default timeout; a caller may wait longer. The slot ran out
	# while that probe was still waiting, and a second call went through as another probe.
	policy = CircuitPolicy(failure_threshold=1, window_seconds=30, open_seconds=0.5, probe_seconds=1)
	requester, breaker, target = open_circuit(kafka, circuits, policy)
	outcome = {}

	def probe():
		try:
			requester.request(PRICE, {"sku": "S-1"}, 4, target=target)
		except Exception as exc:
			outcome["probe"] = exc

	try:
		time.sleep(0.6)
		first = threading.Thread(target=probe)
		first.start()
		time.sleep(1.5)
		with pytest.raises(CircuitOpen, match="is half-open"):
			requester.request(PRICE, {"sku": "S-1"}, 0.3, target=target)
		first.join(10)
		assert isinstance(outcome["probe"], RequestTimeout)
		assert breaker.state(target).state == "open", "the long probe's timeout opens the circuit again"
	finally:
		requester.close()
