"""The delivery step and the worker loop around it.

``DeliveryEngine.attempt_all`` takes claimed deliveries with their subscriptions and returns one
DeliveryAttempt each: rendered, sent, and decided (delivered; retry at a time from the policy
or the receiver's Retry-After; dead letter). ``DeliveryWorker`` claims due deliveries from a
DeliveryStore, runs them concurrently (webhooks one request each, broker destinations one
publish per destination), settles them and repeats; any number of workers share one store.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from cauldron_fabric.core.delivery.destinations import Destination, Destinations, Item
from cauldron_fabric.core.delivery.overdue import LONGEST_ATTEMPT_SECONDS, RunningAttempts
from cauldron_fabric.core.delivery.policy import RateLimits
from cauldron_fabric.core.delivery.records import (
	DEAD,
	DEFERRED,
	DELIVERED,
	RETRYING,
	DeliveryAttempt,
	DeliveryJob,
	Outcome,
	excerpt,
)
from cauldron_fabric.core.delivery.store import DeliveryStore
from cauldron_fabric.core.delivery.subscription import BrokenSubscription, Subscription
from cauldron_fabric.core.delivery.transform import RenderedPayload
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import FabricError, RetryableError
from cauldron_fabric.core.markup import plain
from cauldron_fabric.core.ports import Waker

log = logging.getLogger("cauldron_fabric.delivery")
Work = tuple[DeliveryJob, Subscription | BrokenSubscription | None]


@dataclass(frozen=True, slots=True)
class DeliveryReport:
	"""What one worker cycle did."""

	claimed: int = 0
	delivered: int = 0
	retrying: int = 0
	dead: int = 0
	deferred: int = 0
	error: str | None = None


@dataclass(frozen=True, slots=True)
class _Prepared:
	job: DeliveryJob
	subscription: Subscription
	envelope: Envelope
	payload: RenderedPayload
	destination: Destination
	started: dt.datetime


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
	):
		self.destinations = destinations
		self.on_waiting = on_waiting
		self.running = RunningAttempts(overdue_after, log)
		self.clock = clock
		self.rng = rng or random.Random()
		self.limits = limits or RateLimits()
		self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="fabric-delivery")
		self._rng_lock = threading.Lock()

	def attempt(
		self, job: DeliveryJob, subscription: Subscription | BrokenSubscription | None
	) -> DeliveryAttempt:
		"""Makes one attempt for one delivery."""
		return self.attempt_all([(job, subscription)])[0]

	def attempt_all(self, work: Sequence[Work]) -> list[DeliveryAttempt]:
		"""Makes one attempt per delivery, concurrently; returns the attempts in the same order."""
		results: list[DeliveryAttempt | None] = [None] * len(work)
		groups: dict[int, list[tuple[int, _Prepared]]] = {}
		futures = []
		for index, (job, subscription) in enumerate(work):
			prepared = self._prepare(job, subscription)
			if isinstance(prepared, DeliveryAttempt):
				results[index] = prepared
			elif prepared.destination.batches:
				groups.setdefault(id(prepared.destination), []).append((index, prepared))
			else:
				# Sent at once, so the requests overlap with preparing the rest of the batch.
				futures.append(([(index, prepared)], self._pool.submit(self._send_one, prepared)))
		for group in groups.values():
			futures.append((group, self._pool.submit(self._send_group, [p for _, p in group])))
		pending = {future for _, future in futures}
		tick = self.running.check_seconds if self.on_waiting is None else min(self.running.check_seconds, 1.0)
		while pending:
			pending = wait(pending, timeout=tick).not_done
			self.running.warn_overdue()
			if self.on_waiting is not None:
				self.on_waiting()
		for group, future in futures:
			for (index, prepared), outcome in zip(group, future.result(), strict=True):
				results[index] = self._decide(prepared.job, prepared.subscription, prepared.started, outcome)
		return [r for r in results if r is not None]

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
			return DeliveryAttempt(
				job.seq, job.subscription, job.event_id, job.attempts, DEFERRED, started,
				subscription.destination, next_attempt_at=started + dt.timedelta(seconds=wait),
			)  # fmt: skip
		try:
			envelope = job.envelope()
			payload = subscription.transform.render(envelope)
			destination = self.destinations.open(subscription.destination, subscription.webhook)
		except FabricError as exc:
			return self._decide(job, subscription, started, Outcome(False, exc.retryable, str(exc)))
		return _Prepared(job, subscription, envelope, payload, destination, started)

	def _send_one(self, prepared: _Prepared) -> list[Outcome]:
		with self.running.tracking(_attempts([prepared]), prepared.destination.timed):
			return _timed([prepared], lambda: [prepared.destination.deliver(*_item(prepared))])

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


class DeliveryWorker:
	"""Claims due deliveries, attempts them and settles them, cycle after cycle."""

	def __init__(
		self,
		store: DeliveryStore,
		subscriptions: Callable[[str], Subscription | BrokenSubscription | None],
		engine: DeliveryEngine,
		*,
		batch_size: int = 200,
		on_settled: Callable[[list[DeliveryAttempt]], None] | None = None,
	):
		self.store, self.subscriptions, self.engine = store, subscriptions, engine
		self.batch_size = batch_size
		self.on_settled = on_settled

	def deliver_due(self) -> DeliveryReport:
		"""Runs one cycle: claim a batch, attempt every delivery, settle them all."""
		jobs = self.store.claim(self.batch_size)
		if not jobs:
			return DeliveryReport()
		try:
			attempts = self.engine.attempt_all([(job, self.subscriptions(job.subscription)) for job in jobs])
		except BaseException:
			self.store.release()
			raise
		self.store.settle(attempts)
		if self.on_settled is not None:
			self.on_settled(attempts)
		statuses = [a.status for a in attempts]
		return DeliveryReport(
			len(jobs),
			statuses.count(DELIVERED),
			statuses.count(RETRYING),
			statuses.count(DEAD),
			statuses.count(DEFERRED),
		)

	def run(
		self,
		should_stop: Callable[[], bool],
		waker: Waker | None = None,
		idle_wait: float = 1.0,
		max_seconds: float | None = None,
	) -> None:
		"""Delivers until ``should_stop()`` says so or ``max_seconds`` pass; idles on the waker."""
		started = time.monotonic()
		while not should_stop():
			if max_seconds is not None and time.monotonic() - started >= max_seconds:
				return
			try:
				report = self.deliver_due()
			except RetryableError as exc:
				log.warning("delivery cycle failed, will retry: %s", exc)
				report = DeliveryReport(error=str(exc))
			if report.claimed >= self.batch_size:
				continue
			if waker is not None:
				waker.wait(idle_wait)
			else:
				time.sleep(idle_wait if report.claimed == 0 else min(idle_wait, 0.1))
