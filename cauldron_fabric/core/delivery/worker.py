"""The worker loop: claim due deliveries, attempt them, settle them, cycle after cycle.

A claim holds its rows locked until it is settled, so one slow request would hold the whole
batch, and the next claim, for up to its timeout. The worker therefore waits ``patience`` seconds
for a batch, then settles what finished and leaves the webhook requests still under way in
flight: each such delivery is settled with a lease (its ``next_attempt_at`` moved past the
request's deadline and a margin; no attempt counted yet) and the worker claims the next batch.
When the request ends, the worker claims that delivery again, if it is still pending at its
lease, and settles the attempt. A delivery with an ordering key stays pending meanwhile, so the
entity's later events still wait behind it. A worker that dies with requests in flight loses
nothing: their deliveries are due again when their leases end, their attempts uncounted, as
when a worker dies holding a claim. A send that never started (all sending threads busy) is
deferred instead, due again at once.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cauldron_fabric.core.delivery.engine import DeliveryEngine, InFlight
from cauldron_fabric.core.delivery.records import DEAD, DEFERRED, DELIVERED, RETRYING, DeliveryAttempt
from cauldron_fabric.core.delivery.store import DeliveryStore
from cauldron_fabric.core.delivery.subscription import BrokenSubscription, Subscription
from cauldron_fabric.core.errors import RetryableError
from cauldron_fabric.core.ports import Waker

log = logging.getLogger("cauldron_fabric.delivery")
PATIENCE_SECONDS = 1.0  # how long a batch waits for slow webhook requests before claiming more
LEASE_MARGIN_SECONDS = 30.0  # past a request's deadline, before its delivery is anyone's again


@dataclass(frozen=True, slots=True)
class DeliveryReport:
	"""What one worker cycle did."""

	claimed: int = 0
	delivered: int = 0
	retrying: int = 0
	dead: int = 0
	deferred: int = 0
	error: str | None = None
	in_flight: int = 0  # requests left running past the patience, settled by a later cycle


@dataclass(frozen=True, slots=True)
class _Leased:
	flight: InFlight
	lease: dt.datetime


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
		patience: float = PATIENCE_SECONDS,
		lease_margin: float = LEASE_MARGIN_SECONDS,
	):
		self.store, self.subscriptions, self.engine = store, subscriptions, engine
		self.batch_size = batch_size
		self.on_settled = on_settled
		self.patience, self.lease_margin = patience, lease_margin
		self._leased: dict[int, _Leased] = {}

	@property
	def in_flight(self) -> int:
		"""Returns how many deliveries have a request under way past the patience."""
		return len(self._leased)

	def deliver_due(self) -> DeliveryReport:
		"""Runs one cycle: settle the requests that ended in flight, claim a batch, attempt every
		delivery, settle those done (leasing the slow ones)."""
		attempts = self._settle_landed()
		jobs = self.store.claim(self.batch_size)
		if jobs:
			attempts += self._attempt(jobs)
		statuses = [a.status for a in attempts]
		return DeliveryReport(
			len(jobs),
			statuses.count(DELIVERED),
			statuses.count(RETRYING),
			statuses.count(DEAD),
			statuses.count(DEFERRED),
			in_flight=len(self._leased),
		)

	def _attempt(self, jobs) -> list[DeliveryAttempt]:
		leases: list[DeliveryAttempt] = []
		try:
			results, flights = self.engine.start(
				[(job, self.subscriptions(job.subscription)) for job in jobs]
			)
			self.engine.wait(flights, self.patience)
			for flight in flights:
				if flight.future.done():
					decided = self.engine.settled(flight)
				elif flight.future.cancel():
					decided = self.engine.deferred(flight, 0)
				else:
					leases.append(self._lease(flight))
					continue
				for index, attempt in decided:
					results[index] = attempt
		except BaseException:
			self.store.release()
			raise
		attempts = [r for r in results if r is not None]
		self.store.settle(attempts + leases)
		self._report(attempts)
		return attempts

	def _lease(self, flight: InFlight) -> DeliveryAttempt:
		"""Leaves a webhook request running; its delivery is settled as due after its deadline."""
		((_, prepared),) = flight.entries
		job = prepared.job
		lease = self.engine.clock() + dt.timedelta(seconds=flight.timeout + self.lease_margin)
		self.engine.hold_slow(flight)
		self._leased[job.seq] = _Leased(flight, lease)
		return DeliveryAttempt(
			job.seq, job.subscription, job.event_id, job.attempts, DEFERRED, prepared.started,
			prepared.subscription.destination, next_attempt_at=lease,
		)  # fmt: skip

	def _settle_landed(self, wait: bool = False) -> list[DeliveryAttempt]:
		"""Settles the deliveries whose requests ended in flight (all of them, after they end, with ``wait``)."""
		if wait:
			self.engine.wait([leased.flight for leased in self._leased.values()])
		landed = {seq: leased for seq, leased in self._leased.items() if leased.flight.future.done()}
		if not landed:
			return []
		# They stay leased until their outcomes are written: an outcome dropped because the
		# database was lost for a moment would send the event again when the lease ended.
		jobs = self.store.reclaim({seq: leased.lease for seq, leased in landed.items()})
		attempts = []
		if jobs:
			try:
				attempts = [self.engine.decide_again(job, landed[job.seq].flight) for job in jobs]
				self.store.settle(attempts)
			except BaseException:
				self.store.release()
				raise
		for seq in landed:
			del self._leased[seq]
		self._forget(landed, {job.seq for job in jobs})
		self._report(attempts)
		return attempts

	def _forget(self, landed: dict[int, _Leased], settled: set[int]) -> None:
		for seq in landed.keys() - settled:
			log.warning(
				"Delivery %s changed while its webhook request was under way (discarded, or its lease ran out"
				" and another worker took it); this attempt's outcome is not recorded.",
				seq,
			)

	def _report(self, attempts: list[DeliveryAttempt]) -> None:
		if self.on_settled is not None and attempts:
			self.on_settled(attempts)

	def drain(self) -> list[DeliveryAttempt]:
		"""Waits for the requests in flight and settles their deliveries (before the worker stops)."""
		return self._settle_landed(wait=True) if self._leased else []

	def run(
		self,
		should_stop: Callable[[], bool],
		waker: Waker | None = None,
		idle_wait: float = 1.0,
		max_seconds: float | None = None,
	) -> None:
		"""Delivers until ``should_stop()`` says so or ``max_seconds`` pass; idles on the waker.

		The requests still in flight then are waited for and settled.
		"""
		started = time.monotonic()
		try:
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
				# Requests in flight land at any time: look again soon to settle them.
				wait = idle_wait if not self._leased else min(idle_wait, 0.1)
				if waker is not None:
					waker.wait(wait)
				else:
					time.sleep(wait if report.claimed == 0 else min(wait, 0.1))
		finally:
			self.drain()
