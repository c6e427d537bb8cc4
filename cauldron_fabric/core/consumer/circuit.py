"""A circuit breaker per target: a failing responder is cut off instead of piling up timeouts.

``failure_threshold`` failures (errors or timeouts) within ``window_seconds`` open the circuit:
calls fail at once with CircuitOpen for ``open_seconds``. Then the circuit is half-open: one call
at a time goes through as a probe; its success closes the circuit, its failure (whatever it
raised) opens it again. A probe that never reports back (its worker died) is replaced after
``probe_seconds``, or after the call's own timeout when that is longer.

The state lives in a CircuitStore so that every worker of every machine sees the same circuit:
``RedisCircuitStore`` in production, ``MemoryCircuitStore`` within one process.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from cauldron_fabric.core.consumer.ports import CircuitPolicy, CircuitState, CircuitStore
from cauldron_fabric.core.errors import RetryableError

T = TypeVar("T")
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpen(RetryableError):
	"""Calls to a target are refused for now because it failed too often."""

	def __init__(self, state: CircuitState):
		self.state = state
		when = dt.datetime.fromtimestamp(state.retry_at or time.time(), dt.timezone.utc).strftime(
			"%H:%M:%S UTC"
		)
		super().__init__(
			f"The circuit for {state.target!r} is {state.state.replace('_', '-')} after {state.failures} failure(s);"
			f" calls are refused until {when}.",
			hint="The responder is failing or down; the next call after that time probes it.",
		)


@dataclass
class _Circuit:
	state: str = CLOSED
	failures: list[float] = field(default_factory=list)
	opened_at: float | None = None
	probe_until: float | None = None


class MemoryCircuitStore(CircuitStore):
	"""Circuit states in process memory, shared by the threads of one process."""

	def __init__(self):
		self._circuits: dict[str, _Circuit] = {}
		self._lock = threading.Lock()

	def _circuit(self, target: str) -> _Circuit:
		return self._circuits.setdefault(target, _Circuit())

	@staticmethod
	def _view(target: str, circuit: _Circuit, now: float, policy: CircuitPolicy) -> CircuitState:
		recent = [t for t in circuit.failures if t > now - policy.window_seconds]
		retry_at = None
		if circuit.state == OPEN and circuit.opened_at is not None:
			retry_at = circuit.opened_at + policy.open_seconds
		elif circuit.state == HALF_OPEN:
			retry_at = circuit.probe_until
		return CircuitState(
			target,
			circuit.state,
			len(recent),
			circuit.opened_at,
			retry_at,
			circuit.failures[-1] if circuit.failures else None,
		)

	def acquire(self, target: str, now: float, policy: CircuitPolicy) -> tuple[bool, CircuitState]:
		"""Lets closed calls through; grants one probe at a time once the open time is over."""
		with self._lock:
			circuit = self._circuit(target)
			allowed = circuit.state == CLOSED
			if circuit.state == OPEN and now >= (circuit.opened_at or 0) + policy.open_seconds:
				circuit.state, circuit.probe_until, allowed = HALF_OPEN, now + policy.probe_seconds, True
			elif circuit.state == HALF_OPEN and now >= (circuit.probe_until or 0):
				circuit.probe_until, allowed = now + policy.probe_seconds, True
			return allowed, self._view(target, circuit, now, policy)

	def record_failure(self, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		"""Counts the failure in the window; opens at the threshold or when a probe failed."""
		with self._lock:
			circuit = self._circuit(target)
			circuit.failures = [t for t in circuit.failures if t > now - policy.window_seconds] + [now]
			if circuit.state == HALF_OPEN or (
				circuit.state == CLOSED and len(circuit.failures) >= policy.failure_threshold
			):
				circuit.state, circuit.opened_at, circuit.probe_until = OPEN, now, None
			return self._view(target, circuit, now, policy)

	def record_success(self, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		"""Closes a half-open circuit and forgets its failures."""
		with self._lock:
			circuit = self._circuit(target)
			if circuit.state == HALF_OPEN:
				self._circuits[target] = circuit = _Circuit()
			return self._view(target, circuit, now, policy)

	def get(self, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		"""Returns the target's state (closed when unknown)."""
		with self._lock:
			return self._view(target, self._circuits.get(target) or _Circuit(), now, policy)

	def all(self, now: float, policy: CircuitPolicy) -> list[CircuitState]:
		"""Returns every known target's state."""
		with self._lock:
			return [self._view(t, c, now, policy) for t, c in sorted(self._circuits.items())]

	def reset(self, target: str) -> None:
		"""Closes the circuit and forgets the failures."""
		with self._lock:
			self._circuits.pop(target, None)


class CircuitBreaker:
	"""Guards calls per target with a shared CircuitStore."""

	def __init__(
		self, store: CircuitStore, policy: CircuitPolicy | None = None, clock: Callable[[], float] = time.time
	):
		self.store = store
		self.policy = policy or CircuitPolicy()
		self.clock = clock

	def before(self, target: str, hold: float | None = None) -> CircuitState:
		"""Returns the state when a call may go now (half_open: it is the probe); raises CircuitOpen if not.

		A call that may wait ``hold`` seconds keeps the probe slot at least that long: were the
		slot to end first, a second probe would go while the first is still waiting.
		"""
		policy = self.policy
		if hold is not None and hold > policy.probe_seconds:
			policy = dataclasses.replace(policy, probe_seconds=hold)
		allowed, state = self.store.acquire(target, self.clock(), policy)
		if not allowed:
			raise CircuitOpen(state)
		return state

	def succeeded(self, target: str) -> CircuitState:
		"""Reports a successful call."""
		return self.store.record_success(target, self.clock(), self.policy)

	def failed(self, target: str) -> CircuitState:
		"""Reports a failed or timed-out call."""
		return self.store.record_failure(target, self.clock(), self.policy)

	def raised(
		self, target: str, admitted: CircuitState, error: BaseException, failure: type[BaseException]
	) -> None:
		"""Reports a call that raised: a failure when ``error`` is a ``failure``, or when the call was the probe.

		A probe has to end whatever it raised: unreported, it would keep the circuit half-open, refusing
		every other call, until its slot runs out.
		"""
		if isinstance(error, failure) or admitted.state == HALF_OPEN:
			self.failed(target)

	def call(self, target: str, function: Callable[[], T], failure: type[BaseException] = Exception) -> T:
		"""Runs ``function`` through the circuit; exceptions of type ``failure`` count against it."""
		admitted = self.before(target)
		try:
			result = function()
		except BaseException as exc:
			self.raised(target, admitted, exc, failure)
			raise
		self.succeeded(target)
		return result

	def state(self, target: str) -> CircuitState:
		"""Returns a target's current state."""
		return self.store.get(target, self.clock(), self.policy)

	def states(self) -> list[CircuitState]:
		"""Returns the state of every target seen."""
		return self.store.all(self.clock(), self.policy)

	def with_policy(self, policy: CircuitPolicy) -> CircuitBreaker:
		"""Returns a breaker on the same store with another policy."""
		return CircuitBreaker(self.store, policy, self.clock)


def describe(state: CircuitState) -> dict:
	"""Returns a state as plain data (times as ISO-8601 UTC)."""

	def iso(value: float | None) -> str | None:
		return dt.datetime.fromtimestamp(value, dt.timezone.utc).isoformat() if value else None

	return {
		"target": state.target,
		"state": state.state,
		"failures": state.failures,
		"openedAt": iso(state.opened_at),
		"retryAt": iso(state.retry_at),
		"lastFailureAt": iso(state.last_failure_at),
	}
