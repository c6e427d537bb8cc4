"""A circuit breaker per webhook endpoint (scheme, host, port): an outage delays deliveries, it
never spends their attempts.

``failure_threshold`` failures in a row that say the endpoint is down (no answer at all: refused,
reset, timed out; or 5xx, 429) open its circuit: its due deliveries are deferred, no attempt
spent, for ``open_seconds``. Then one delivery goes through as the probe while the others stay
deferred: its success closes the circuit, its failure opens it again for twice as long, at most
``max_open_seconds``. Any other answer (2xx, 4xx) says the endpoint is up and ends the run of
failures. A probe that never reports back (its worker died) is replaced after its attempt's
timeout and a margin.

The state lives where every worker sees it: ``RedisEndpointCircuits`` (circuit_redis.py) in
production, ``MemoryEndpointCircuits`` within one process. Desk lists the circuits beside the
request-reply ones (Fabric Circuit), as the same ``CircuitState`` values.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cauldron_fabric.core.consumer.ports import CircuitState
from cauldron_fabric.core.delivery.records import Outcome

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
PROBE_MARGIN_SECONDS = 5.0  # past the probe's own timeout, before another probe may go
RECHECK_SECONDS = 1.0  # how long a clean endpoint is let through before the store is asked again
SWEEP_SIZE = 1024  # trusted endpoints kept before the expired ones are forgotten


@dataclass(frozen=True, slots=True)
class EndpointPolicy:
	"""When an endpoint's circuit opens and for how long."""

	failure_threshold: int = 5
	open_seconds: float = 30.0
	max_open_seconds: float = 600.0


def endpoint_of(url: str) -> str:
	"""Returns the endpoint a webhook URL calls, ``scheme://host:port``: what one circuit covers."""
	parts = urlsplit(url)
	host = (parts.hostname or "").lower()
	host = f"[{host}]" if ":" in host else host
	try:
		port = parts.port
	except ValueError:
		port = None
	return f"{parts.scheme}://{host}:{port or (443 if parts.scheme == 'https' else 80)}"


def says_down(outcome: Outcome) -> bool | None:
	"""Tells whether an attempt's outcome says its endpoint is down (True), up (False) or neither (None).

	No answer at all (refused, reset, timed out, not resolved), 5xx and 429 say down; any other
	answer says up. An attempt refused before it was sent (a header the request cannot carry)
	says nothing about the endpoint.
	"""
	if outcome.ok:
		return False
	code = outcome.status_code
	if code is None:
		return True if outcome.retryable else None
	return code >= 500 or code == 429


class EndpointCircuits(abc.ABC):
	"""Keeps endpoint circuit states where every worker sees them; each operation is atomic."""

	@abc.abstractmethod
	def acquire(self, endpoint: str, now: float, probe_seconds: float) -> tuple[bool, CircuitState]:
		"""Decides whether an attempt may go now; an open circuit past its time grants one probe."""

	@abc.abstractmethod
	def record_failure(self, endpoint: str, now: float, policy: EndpointPolicy) -> CircuitState:
		"""Counts a failure in a row; opens at the threshold, or again (for longer) when the probe failed."""

	@abc.abstractmethod
	def record_success(self, endpoint: str, now: float) -> CircuitState:
		"""Closes the circuit and forgets its failures: the endpoint answered."""

	@abc.abstractmethod
	def release_probe(self, endpoint: str, now: float) -> None:
		"""Lets the next attempt be the probe at once: the one granted was never sent."""

	@abc.abstractmethod
	def all(self, now: float) -> list[CircuitState]:
		"""Returns the state of every endpoint with failures on record, sorted by endpoint."""

	@abc.abstractmethod
	def reset(self, endpoint: str) -> None:
		"""Closes an endpoint's circuit and forgets it."""


@dataclass
class _Circuit:
	state: str = CLOSED
	failures: int = 0
	opened_at: float | None = None
	open_seconds: float | None = None
	probe_until: float | None = None
	last_failure_at: float | None = None

	def view(self, endpoint: str) -> CircuitState:
		retry_at = None
		if self.state == OPEN:
			retry_at = (self.opened_at or 0) + (self.open_seconds or 0)
		elif self.state == HALF_OPEN:
			retry_at = self.probe_until
		return CircuitState(
			endpoint, self.state, self.failures, self.opened_at, retry_at, self.last_failure_at
		)


class MemoryEndpointCircuits(EndpointCircuits):
	"""Endpoint circuits in process memory, shared by the threads of one process."""

	def __init__(self):
		self._circuits: dict[str, _Circuit] = {}
		self._lock = threading.Lock()

	def acquire(self, endpoint: str, now: float, probe_seconds: float) -> tuple[bool, CircuitState]:
		"""Lets closed attempts through; grants one probe at a time once the open time is over."""
		with self._lock:
			circuit = self._circuits.get(endpoint) or _Circuit()
			allowed = circuit.state == CLOSED
			if circuit.state == OPEN and now >= (circuit.opened_at or 0) + (circuit.open_seconds or 0):
				circuit.state, circuit.probe_until, allowed = HALF_OPEN, now + probe_seconds, True
			elif circuit.state == HALF_OPEN and now >= (circuit.probe_until or 0):
				circuit.probe_until, allowed = now + probe_seconds, True
			if circuit.state != CLOSED or circuit.failures:
				self._circuits[endpoint] = circuit
			return allowed, circuit.view(endpoint)

	def record_failure(self, endpoint: str, now: float, policy: EndpointPolicy) -> CircuitState:
		"""Counts the failure; opens the circuit at the threshold or when the probe failed."""
		with self._lock:
			circuit = self._circuits.setdefault(endpoint, _Circuit())
			circuit.failures, circuit.last_failure_at = circuit.failures + 1, now
			if circuit.state == HALF_OPEN:
				longer = min(2 * (circuit.open_seconds or policy.open_seconds), policy.max_open_seconds)
				circuit.state, circuit.opened_at, circuit.open_seconds = OPEN, now, longer
				circuit.probe_until = None
			elif circuit.state == CLOSED and circuit.failures >= policy.failure_threshold:
				circuit.state, circuit.opened_at, circuit.open_seconds = OPEN, now, policy.open_seconds
			return circuit.view(endpoint)

	def record_success(self, endpoint: str, now: float) -> CircuitState:
		"""Forgets the endpoint: closed, no failures."""
		with self._lock:
			self._circuits.pop(endpoint, None)
		return CircuitState(endpoint)

	def release_probe(self, endpoint: str, now: float) -> None:
		"""Ends the probe's slot now, when the circuit is half-open."""
		with self._lock:
			circuit = self._circuits.get(endpoint)
			if circuit is not None and circuit.state == HALF_OPEN:
				circuit.probe_until = now

	def all(self, now: float) -> list[CircuitState]:
		"""Returns every endpoint with failures on record."""
		with self._lock:
			return [circuit.view(e) for e, circuit in sorted(self._circuits.items())]

	def reset(self, endpoint: str) -> None:
		"""Closes the circuit and forgets the failures."""
		with self._lock:
			self._circuits.pop(endpoint, None)


class EndpointBreaker:
	"""Admits webhook attempts per endpoint and learns from their outcomes (thread-safe)."""

	def __init__(
		self,
		store: EndpointCircuits | None = None,
		policy: EndpointPolicy | None = None,
		clock: Callable[[], float] = time.time,
		recheck_seconds: float = RECHECK_SECONDS,
	):
		self.store = store or MemoryEndpointCircuits()
		self.policy = policy or EndpointPolicy()
		self.clock = clock
		self.recheck_seconds = recheck_seconds
		self._healthy: dict[str, float] = {}  # endpoint: until when its clean state is trusted
		self._healthy_lock = threading.Lock()
		self._sweep_at = SWEEP_SIZE  # how many trusted endpoints make admit forget the expired ones

	def admit(self, endpoint: str, timeout: float) -> tuple[bool, CircuitState]:
		"""Tells whether an attempt may go now, and the circuit's state (half_open and allowed: the probe).

		A probe keeps its slot for the attempt's ``timeout`` and a margin, so no second probe
		goes while the first may still be waiting for its answer. An endpoint the store last
		showed closed with no failures is let through without asking again for
		``recheck_seconds``: a round trip to Redis per attempt cost a quarter of the worker's
		rate. Another worker's opening is seen that much later; this worker's own failures
		are written at once and end the trust.
		"""
		now = self.clock()
		if self._healthy.get(endpoint, 0.0) > now:
			return True, CircuitState(endpoint)
		allowed, state = self.store.acquire(endpoint, now, timeout + PROBE_MARGIN_SECONDS)
		if allowed and state.state == CLOSED and not state.failures:
			self._healthy[endpoint] = now + self.recheck_seconds
			if len(self._healthy) >= self._sweep_at:
				self._forget_expired(now)
		return allowed, state

	def _forget_expired(self, now: float) -> None:
		"""Drops the endpoints whose trust is over: a long run calls many (one per tenant, say) once."""
		with self._healthy_lock:
			for endpoint, until in list(self._healthy.items()):
				if until <= now:
					self._healthy.pop(endpoint, None)
			self._sweep_at = max(SWEEP_SIZE, 2 * len(self._healthy))

	def report(self, endpoint: str, admitted: CircuitState, outcome: Outcome) -> CircuitState | None:
		"""Records what an admitted attempt says of its endpoint; returns the new state when it changed.

		An endpoint that was closed with no failures and answered stays so without a write: the
		common case costs no second round trip.
		"""
		down = says_down(outcome)
		if down:
			self._healthy.pop(endpoint, None)
			return self.store.record_failure(endpoint, self.clock(), self.policy)
		if down is False and (admitted.state != CLOSED or admitted.failures):
			return self.store.record_success(endpoint, self.clock())
		return None

	def withdraw(self, endpoint: str, admitted: CircuitState) -> None:
		"""Gives back an admission whose attempt was never sent: a probe's slot is freed at once."""
		if admitted.state == HALF_OPEN:
			self.store.release_probe(endpoint, self.clock())

	def states(self) -> list[CircuitState]:
		"""Returns the state of every endpoint with failures on record."""
		return self.store.all(self.clock())
