"""Request-reply on each real bus: round trips, load balancing, timeouts, and a circuit in Redis."""

import datetime as dt
import logging
import signal
import threading
import time
import uuid

import pika
import pytest
from cloudevents.core.bindings import amqp as ce_amqp
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from consumer_buses import RabbitBus, bus_fixture  # noqa: F401
from tcp_proxy import Proxy

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
from cauldron_fabric.core.errors import ConfigurationError, FabricError, TransportUnavailable
from cauldron_fabric.testing.kafka_broker import free_port
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
		context.reply({"price": payload["qty"] * 2.5, "responder": name, "note": payload.get("note", "")})

	return handle


class Responders:
	"""Members of one responder group, each consuming in its own thread."""

	def __init__(self, bus, channel, group, names, **option_fields):
		self.stop, self.threads, self.sources = threading.Event(), [], []
		self.tracking = MemoryTracking()  # the group's one database
		options = ConsumerOptions(group=group, max_attempts=2, poll_timeout=0.05, **option_fields)
		for name in names:
			source = bus.source(options, channel)
			consumer = Consumer(
				source,
				HandlerTable.from_mapping({PRICE: pricing_handler(name)}),
				self.tracking.session(),
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


def test_a_rabbitmq_requester_idle_past_the_heartbeat_timeout_reconnects_instead_of_failing():
	# Between requests nothing answers heartbeats: the broker drops the idle connection, and the
	# next request used to fail on it (a 503 and a circuit failure) instead of reconnecting.
	bus = RabbitBus()
	channel, group = bus.channel(), f"pricing-{uuid.uuid4().hex[:6]}"
	responders = Responders(bus, channel, group, ["east"])
	requester = open_requester(
		f"{bus.url}?heartbeat=1", source="urn:test:requester", broker_options={"exchange": channel}
	)
	try:
		assert requester.request(PRICE, {"sku": "S-1", "qty": 1}, 10).payload["price"] == 2.5
		time.sleep(4)  # the broker closes a connection silent for two heartbeats
		assert requester.request(PRICE, {"sku": "S-1", "qty": 2}, 10).payload["price"] == 5.0
	finally:
		requester.close()
		responders.close()
		bus.close()


def test_concurrent_rabbitmq_requests_each_get_their_own_reply_within_their_own_timeout():
	# The requester is shared by a process's threads. It used to serve one call at a time, the
	# wait for the channel not counted in the timeout: a call stuck behind a silent target
	# answered long after its own timeout (or timed out, opening a healthy target's circuit).
	bus = RabbitBus()
	channel, group = bus.channel(), f"pricing-{uuid.uuid4().hex[:6]}"
	responders = Responders(bus, channel, group, ["east", "west"])
	requester = open_requester(bus.url, source="urn:test:requester", broker_options={"exchange": channel})
	outcomes = {}

	def ask(name, payload, timeout):
		started = time.monotonic()
		try:
			outcomes[name] = (requester.request(PRICE, payload, timeout).payload, time.monotonic() - started)
		except Exception as exc:
			outcomes[name] = (exc, time.monotonic() - started)

	try:
		requester.request(PRICE, {"sku": "S-1", "qty": 1}, 10)  # connected, responders up
		silent = threading.Thread(target=ask, args=("silent", {"sku": "S-0", "qty": 1, "silent": True}, 3))
		silent.start()
		time.sleep(0.3)
		askers = [threading.Thread(target=ask, args=(n, {"sku": f"S-{n}", "qty": n}, 2)) for n in range(1, 9)]
		for thread in askers:
			thread.start()
		for thread in [silent, *askers]:
			thread.join(15)
		assert isinstance(outcomes["silent"][0], RequestTimeout) and 2.9 < outcomes["silent"][1] < 4
		for n in range(1, 9):
			payload, took = outcomes[n]
			assert isinstance(payload, dict), payload
			assert payload["price"] == n * 2.5, "each call gets the reply to its own request"
			assert took < 1.5, f"call {n} took {took:.1f} s behind the silent one"
	finally:
		requester.close()
		responders.close()
		bus.close()


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


def test_a_rabbitmq_reply_whose_time_is_an_amqp_timestamp_answers_the_request():
	# A responder of another module replying with the official SDK's AMQP binding writes 'time'
	# as milliseconds since the epoch. The requester read it as text, found no ISO-8601 time and
	# dropped the reply: the call timed out although the answer had come.
	bus = RabbitBus()
	channel, queue = bus.channel(), f"sdk-pricing-{uuid.uuid4().hex[:6]}"
	bus.queues.add(queue)
	admin = pika.BlockingConnection(pika.URLParameters(bus.url)).channel()
	admin.queue_declare(queue, auto_delete=True)
	admin.queue_bind(queue, channel, PRICE)

	def respond(chan, method, properties, body):
		reply = CloudEvent(
			attributes={
				"type": "quote.price.replied",
				"source": "urn:cauldron:pricing",
				"id": uuid.uuid4().hex,
				"time": dt.datetime.now(dt.timezone.utc),
				"datacontenttype": "application/json",
			},
			data={"entity": "Quote", "entityId": "Q-1", "action": "replied", "payload": {"price": 7.5}},
		)
		message = ce_amqp.to_binary(reply, JSONFormat())
		answer = pika.BasicProperties(
			headers=message.application_properties,
			content_type="application/json",
			correlation_id=properties.correlation_id,
		)
		chan.basic_publish("", properties.reply_to, message.application_data, answer)

	admin.basic_consume(queue, respond, auto_ack=True)
	requester = open_requester(bus.url, source="urn:test:requester", broker_options={"exchange": channel})
	outcome = {}

	def ask():
		try:
			outcome["reply"] = requester.request(PRICE, {"sku": "S-1", "qty": 3}, 3).payload
		except Exception as exc:
			outcome["reply"] = exc

	try:
		asker = threading.Thread(target=ask)
		asker.start()
		deadline = time.monotonic() + 5
		while asker.is_alive() and time.monotonic() < deadline:
			admin.connection.process_data_events(time_limit=0.05)
		asker.join(1)
		assert outcome["reply"] == {"price": 7.5}
	finally:
		requester.close()
		admin.connection.close()
		bus.close()


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


def queue_depth(bus, queue):
	"""Returns the ready messages of a queue (0 when it does not exist)."""
	try:
		return bus.connection.channel().queue_declare(queue, passive=True).method.message_count
	except pika.exceptions.ChannelClosedByBroker:
		return 0


def test_rabbitmq_requests_that_expire_unanswered_are_drained_counted_and_never_served_late(caplog):
	# A request nobody takes within its timeout expires in the group's queue and the broker
	# dead-letters it. It used to land in <group>.dead with no fabric header and no record:
	# nothing ever read it, the queue grew with every timeout and nobody could tell why.
	bus = RabbitBus()
	channel, group = bus.channel(), f"pricing-{uuid.uuid4().hex[:6]}"
	options = ConsumerOptions(group=group, poll_timeout=0.05)
	admin = bus.connection.channel()
	admin.exchange_declare(f"{channel}.dlx", "direct", durable=True)
	admin.queue_declare(f"{group}.dead", durable=True)
	admin.queue_bind(f"{group}.dead", f"{channel}.dlx", routing_key=group)  # as earlier versions did
	bus.source(options, channel).close()  # the group's queues exist, but no responder runs
	requester = open_requester(bus.url, source="urn:test:requester", broker_options={"exchange": channel})
	served = []
	try:
		for qty in (1, 2, 3):
			with pytest.raises(RequestTimeout):
				requester.request(PRICE, {"sku": "S-1", "qty": qty}, 0.2)
		deadline = time.monotonic() + 10
		while queue_depth(bus, group) and time.monotonic() < deadline:
			time.sleep(0.1)  # the broker expires them one by one
		consumer = Consumer(
			bus.source(options, channel),
			HandlerTable.from_mapping({PRICE: lambda envelope, context: served.append(envelope)}),
			MemoryTracking().session(),
			options,
		)
		with caplog.at_level(logging.WARNING, "cauldron_fabric.consumer"):
			consumer.run(lambda: getattr(consumer.stats.totals(), "expired", 0) == 3, max_seconds=5)
		consumer.close()
		assert queue_depth(bus, f"{group}.dead") == 0, "the dead letters keep only what failed"
		assert queue_depth(bus, f"{group}.expired") == 0, "expired requests are drained"
		assert served == [], "an expired request is never served late"
		assert consumer.stats.totals().expired == 3
		expired = [r.getMessage() for r in caplog.records if "expired" in r.getMessage()]
		assert len(expired) == 3 and all(PRICE in line for line in expired), expired
	finally:
		requester.close()
		bus.close()


def test_a_rabbitmq_request_to_a_broker_that_stopped_answering_ends_at_its_timeout():
	# The requester waited for the broker's confirm of each request, with no bound: a broker
	# that stopped answering held a call with a 2 s timeout until the heartbeat gave up, over
	# two minutes, and every other call of the process behind it.
	bus = RabbitBus()
	port = free_port()
	proxy = Proxy(port, 5672).start()
	requester = open_requester(
		f"amqp://guest:guest@127.0.0.1:{port}/%2F",
		source="urn:test:requester",
		broker_options={"exchange": bus.channel()},
	)
	try:
		with pytest.raises(TransportUnavailable, match="No responder queue is bound"):
			requester.request(PRICE, {"sku": "S-1", "qty": 1}, 5)  # connected; nobody answers PRICE
		proxy.frozen = True
		started = time.monotonic()
		with pytest.raises(FabricError):
			requester.request(PRICE, {"sku": "S-1", "qty": 1}, 2)
		assert time.monotonic() - started < 4, "the call ended at its timeout"
	finally:
		proxy.frozen = False
		requester.close()
		proxy.stop()
		bus.close()
