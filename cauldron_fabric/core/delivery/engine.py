"""The delivery step: claimed deliveries in, one decided attempt each out.

``DeliveryEngine.start`` renders each claimed delivery and sends it on the sending threads
(webhooks one request each, broker destinations one publish per destination) and returns what is
in flight; ``settled`` turns a finished send into a DeliveryAttempt: delivered; retry at a time
from the policy or the receiver's Retry-After; dead letter. ``attempt_all`` does both and waits.
Webhook endpoints are kept apart: a circuit breaker per endpoint (circuit.py) defers the
deliveries of one that is down, and one endpoint holds at most ``slow_per_endpoint`` attempts
that outlast the worker's patience (worker.py), the others waiting a second, deferred, so a black
hole cannot fill the sending threads.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from cauldron_fabric.core.consumer.ports import CircuitState
from cauldron_fabric.core.delivery.circuit import EndpointBreaker, endpoint_of
from cauldron_fabric.core.delivery.destinations import Destination, Destinations, Item
from cauldron_fabric.core.delivery.overdue import LONGEST_ATTEMPT_SECONDS, RunningAttempts
from cauldron_fabric.core.delivery.policy import RateLimits
from cauldron_fabric.core.delivery.records import (
	DEAD,
	DEFERRED,
	DELIVERED,
	GONE,
	RETRYING,
	DeliveryAttempt,
	DeliveryJob,
	Outcome,
	excerpt,
)
from cauldron_fabric.core.delivery.subscription import BrokenSubscription, Subscription
from cauldron_fabric.core.delivery.transform import RenderedPayload
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import FabricError
from cauldron_fabric.core.markup import plain

log = logging.getLogger("cauldron_fabric.delivery")
Work = tuple[DeliveryJob, Subscription | BrokenSubscription | None]
BUSY_WAIT_SECONDS = 1.0  # how long a delivery to an endpoint holding its share of slow attempts waits


@dataclass(frozen=True, slots=True)
class _Prepared:
	job: DeliveryJob
	subscription: Subscription
	envelope: Envelope
	payload: RenderedPayload
	destination: Destination
	started: dt.datetime
	endpoint: str | None = None  # a webhook's (circuit.endpoint_of)
	admitted: CircuitState | None = None  # the endpoint's circuit when the attempt went


@dataclass(eq=False)
class InFlight:
	"""Sends under way on the sending threads: the deliveries (with their places in the batch) and
	the future of their outcomes."""

	entries: list[tuple[int, _Prepared]]
	future: Future
	endpoint: str | None = None  # a single webhook: it ends by its own deadline
	timeout: float = 0.0
	slow: bool = field(default=False)


class DeliveryEngine:
	"""Turns claimed deliveries into attempts; thread-safe, one per worker process.

	A handler (no timeout) still running ``overdue_after`` seconds after it started, or any other
	attempt past LONGEST_ATTEMPT_SECONDS, is logged as a warning while the engine waits for it
	(see overdue.py). While it waits the engine calls ``on_waiting`` (a heartbeat) every second,
	so a worker held by such an attempt is still seen running.
	"""

	def __init__(
		self,
		destinations: Destinations,
		*,
		clock: Callable[[], dt.datetime] = dt.datetime.now,
		rng: random.Random | None = None,
		limits: RateLimits | None = None,
		concurrency: int = 16,
		overdue_after: float = LONGEST_ATTEMPT_SECONDS,
		on_waiting: Callable[[], None] | None = None,
		circuits: EndpointBreaker | None = None,
		slow_per_endpoint: int | None = None,
	):
		self.destinations = destinations
		self.circuits = circuits or EndpointBreaker()
		self.slow_per_endpoint = slow_per_endpoint or max(2, concurrency // 4)
		self._slow: Counter[str] = Counter()
		self._slow_lock = threading.Lock()
		self.on_waiting = on_waiting
		self.running = RunningAttempts(overdue_after, log)
		self.clock = clock
		self.rng = rng or random.Random()
		self.limits = limits or RateLimits()
		# Twice the concurrency: attempts left running past the worker's patience (at most one
		# thread each) must not take the threads the next batches send on.
		self._pool = ThreadPoolExecutor(2 * max(1, concurrency), thread_name_prefix="fabric-delivery")
		self._rng_lock = threading.Lock()

	def attempt(
		self, job: DeliveryJob, subscription: Subscription | BrokenSubscription | None
	) -> DeliveryAttempt:
		"""Makes one attempt for one delivery."""
		return self.attempt_all([(job, subscription)])[0]

	def attempt_all(self, work: Sequence[Work]) -> list[DeliveryAttempt]:
		"""Makes one attempt per delivery, concurrently; returns the attempts in the same order."""
		results, flights = self.start(work)
		self.wait(flights)
		for flight in flights:
			for index, attempt in self.settled(flight):
				results[index] = attempt
		return [r for r in results if r is not None]

	def start(self, work: Sequence[Work]) -> tuple[list[DeliveryAttempt | None], list[InFlight]]:
		"""Decides what needs no sending and sends the rest; returns the decided attempts (None where
		a send is under way) and the sends in flight."""
		results: list[DeliveryAttempt | None] = [None] * len(work)
		groups: dict[int, list[tuple[int, _Prepared]]] = {}
		flights = []
		for index, (job, subscription) in enumerate(work):
			prepared = self._prepare(job, subscription)
			if isinstance(prepared, DeliveryAttempt):
				results[index] = prepared
			elif prepared.destination.batches:
				groups.setdefault(id(prepared.destination), []).append((index, prepared))
			else:
				# Sent at once, so the requests overlap with preparing the rest of the batch.
				future = self._pool.submit(self._send_one, prepared)
				timeout = prepared.subscription.webhook.timeout if prepared.endpoint else 0.0
				flights.append(InFlight([(index, prepared)], future, prepared.endpoint, timeout))
		for group in groups.values():
			flights.append(InFlight(group, self._pool.submit(self._send_group, [p for _, p in group])))
		return results, flights

	def wait(self, flights: Sequence[InFlight], patience: float | None = None) -> None:
		"""Waits for the sends; after ``patience`` seconds (None: no end) only for those that are no
		single webhook. Warns of overdue attempts and calls ``on_waiting`` meanwhile."""
		pending = {flight.future for flight in flights}
		webhooks = {flight.future for flight in flights if flight.endpoint}
		tick = self.running.check_seconds if self.on_waiting is None else min(self.running.check_seconds, 1.0)
		ends = None if patience is None else time.monotonic() + patience
		while pending:
			left = tick if ends is None else max(0.0, min(tick, ends - time.monotonic()))
			pending = wait(pending, timeout=left).not_done
			self.running.warn_overdue()
			if self.on_waiting is not None:
				self.on_waiting()
			if ends is not None and time.monotonic() >= ends and pending <= webhooks:
				return

	def settled(self, flight: InFlight) -> list[tuple[int, DeliveryAttempt]]:
		"""Returns the decided attempts of a finished send, with their places in the batch."""
		return [
			(index, self._decide(p.job, p.subscription, p.started, outcome))
			for (index, p), outcome in zip(flight.entries, flight.future.result(), strict=True)
		]

	def decide_again(self, job: DeliveryJob, flight: InFlight) -> DeliveryAttempt:
		"""Decides a finished send for its delivery as claimed again (a later attempt count is the stored one)."""
		((_, prepared),) = flight.entries
		(outcome,) = flight.future.result()
		return self._decide(job, prepared.subscription, prepared.started, outcome)

	def deferred(self, flight: InFlight, seconds: float) -> list[tuple[int, DeliveryAttempt]]:
		"""Returns deferrals (no attempt) for a send that never started, due again in ``seconds``."""
		now = self.clock()
		for _, p in flight.entries:
			if p.endpoint is not None and p.admitted is not None:
				# A probe left unsent would hold its slot, and the endpoint's deliveries, for its timeout.
				self.circuits.withdraw(p.endpoint, p.admitted)
		return [
			(index, self._defer(p.job, p.subscription.destination, now, seconds))
			for index, p in flight.entries
		]

	def hold_slow(self, flight: InFlight) -> None:
		"""Counts a single webhook left running past the worker's patience against its endpoint's share
		until it ends."""
		with self._slow_lock:
			self._slow[flight.endpoint] += 1
		flight.slow = True
		flight.future.add_done_callback(lambda _: self._release_slow(flight.endpoint))

	def _release_slow(self, endpoint: str) -> None:
		with self._slow_lock:
			self._slow[endpoint] -= 1
			if self._slow[endpoint] <= 0:
				del self._slow[endpoint]

	def _defer(
		self, job: DeliveryJob, destination: str, started: dt.datetime, seconds: float
	) -> DeliveryAttempt:
		return DeliveryAttempt(
			job.seq, job.subscription, job.event_id, job.attempts, DEFERRED, started, destination,
			next_attempt_at=started + dt.timedelta(seconds=seconds),
		)  # fmt: skip

	def _prepare(
		self, job: DeliveryJob, subscription: Subscription | BrokenSubscription | None
	) -> _Prepared | DeliveryAttempt:
		"""Checks everything that can be decided without sending; returns the attempt when it ends here."""
		started = self.clock()
		if subscription is None:
			# The caller gives None for a subscription that is gone, and may for one that no
			# longer compiles (its filter, template or destination): the message names both.
			return self._dead(
				job,
				started,
				f"Subscription {job.subscription!r} no longer exists or no longer compiles (the Error Log"
				" says why). Fix and save it, then retry this dead letter; discard it if the"
				" subscription is gone.",
			)
		if isinstance(subscription, BrokenSubscription):
			return self._dead(job, started, subscription.dead_letter_reason())
		if not subscription.enabled:
			return self._dead(
				job, started, f"Subscription {job.subscription!r} is disabled; enable it, then retry."
			)
		wait = self.limits.wait_for(subscription.name, subscription.rate_limit, subscription.burst)
		if wait > 0:
			return self._defer(job, subscription.destination, started, wait)
		try:
			envelope = job.envelope()
			payload = subscription.transform.render(envelope)
			destination = self.destinations.open(subscription.destination, subscription.webhook)
		except FabricError as exc:
			return self._decide(job, subscription, started, Outcome(False, exc.retryable, str(exc)))
		if subscription.webhook is None:
			return _Prepared(job, subscription, envelope, payload, destination, started)
		# Last, once nothing else can stop the send: the circuit's answer may be its one probe.
		endpoint = endpoint_of(subscription.webhook.url)
		with self._slow_lock:
			busy = self._slow[endpoint] >= self.slow_per_endpoint
		if busy:
			self.limits.give_back(subscription.name)  # deferred, it sent nothing: no share of the rate
			return self._defer(job, subscription.destination, started, BUSY_WAIT_SECONDS)
		allowed, state = self.circuits.admit(endpoint, subscription.webhook.timeout)
		if not allowed:
			self.limits.give_back(subscription.name)
			# Half-open, the probe's answer may close it any moment: look again soon.
			reopens = BUSY_WAIT_SECONDS
			if state.state == "open":
				reopens = max((state.retry_at or 0) - time.time(), BUSY_WAIT_SECONDS)
			with self._rng_lock:  # spread the deliveries that waited, not all at the probe's time
				reopens += self.rng.uniform(0, BUSY_WAIT_SECONDS)
			return self._defer(job, subscription.destination, started, reopens)
		return _Prepared(job, subscription, envelope, payload, destination, started, endpoint, state)

	def _send_one(self, prepared: _Prepared) -> list[Outcome]:
		with self.running.tracking(_attempts([prepared]), prepared.destination.timed):
			outcomes = _timed([prepared], lambda: [prepared.destination.deliver(*_item(prepared))])
		if prepared.endpoint is not None:
			changed = self.circuits.report(prepared.endpoint, prepared.admitted, outcomes[0])
			if (
				changed is not None
				and changed.state == "open"
				and changed.opened_at == changed.last_failure_at
			):
				log.warning(
					"Webhook endpoint %s is down (%d failure(s) in a row): its deliveries wait, no attempt"
					" spent, until %s, then one goes as a probe.",
					prepared.endpoint, changed.failures,
					dt.datetime.fromtimestamp(changed.retry_at or time.time()).isoformat(timespec="seconds"),
				)  # fmt: skip
		return outcomes

	def _send_group(self, group: list[_Prepared]) -> list[Outcome]:
		destination = group[0].destination
		with self.running.tracking(_attempts(group), destination.timed):
			return _timed(group, lambda: destination.deliver_many([_item(p) for p in group]))

	def _decide(
		self, job: DeliveryJob, subscription: Subscription, started: dt.datetime, outcome: Outcome
	) -> DeliveryAttempt:
		"""Turns an outcome into the attempt record: delivered, retry at a time, or dead letter."""
		number = job.attempts + 1
		common = {
			"destination": subscription.destination,
			"latency_ms": outcome.latency_ms,
			"status_code": outcome.status_code,
			"response_excerpt": outcome.response_excerpt,
		}
		if outcome.ok:
			return DeliveryAttempt(
				job.seq, job.subscription, job.event_id, number, DELIVERED, started, **common
			)
		error = plain(excerpt(outcome.error)) or None  # quotes outside text: see plain
		if outcome.status_code == GONE and subscription.webhook is not None:
			# The receiver says the URL will never work again: every later event would end the same
			# way, so the subscription is disabled (by whoever settles: see DeliveryAttempt.gone).
			error = (
				f"{error} Subscription {job.subscription!r} was disabled at {started:%Y-%m-%d %H:%M:%S}. When "
				"the receiver is back (or the URL is fixed), enable the subscription, then retry its dead letters."
			)
		delay = None
		if outcome.retryable:
			with self._rng_lock:
				delay = subscription.policy.delay_after(number, outcome.retry_after, self.rng)
		if delay is None:
			if outcome.retryable:
				error = f"Gave up after {number} attempt(s). Last error: {error}"
			return DeliveryAttempt(
				job.seq, job.subscription, job.event_id, number, DEAD, started, error=error, **common
			)
		next_at = self.clock() + dt.timedelta(seconds=delay)
		return DeliveryAttempt(
			job.seq,
			job.subscription,
			job.event_id,
			number,
			RETRYING,
			started,
			error=error,
			next_attempt_at=next_at,
			**common,
		)

	def _dead(self, job: DeliveryJob, started: dt.datetime, error: str) -> DeliveryAttempt:
		return DeliveryAttempt(
			job.seq, job.subscription, job.event_id, job.attempts + 1, DEAD, started, error=error
		)

	def close(self) -> None:
		"""Stops the sending threads (after the attempts under way)."""
		self._pool.shutdown(wait=True)


def _item(prepared: _Prepared) -> Item:
	return prepared.envelope, prepared.payload, prepared.job.delivery_id


def _attempts(group: list[_Prepared]) -> list[tuple[str, str, str]]:
	return [(p.job.subscription, p.subscription.destination, p.job.event_id) for p in group]


def _timed(group: list[_Prepared], send: Callable[[], list[Outcome]]) -> list[Outcome]:
	"""Runs ``send``; fills in latencies it did not measure and turns a crash into retryable outcomes."""
	started = time.perf_counter()
	try:
		outcomes = send()
	except Exception as exc:
		log.exception("destination crashed")
		outcomes = [
			Outcome(False, True, f"The destination failed unexpectedly: {type(exc).__name__}: {exc}")
		] * len(group)
	latency = (time.perf_counter() - started) * 1000
	return [
		o if o.latency_ms is not None else Outcome(**{**_fields(o), "latency_ms": latency}) for o in outcomes
	]


def _fields(outcome: Outcome) -> dict:
	return {name: getattr(outcome, name) for name in outcome.__slots__}
