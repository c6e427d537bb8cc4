"""Webhook endpoint circuits in Redis, shared by every delivery worker; each transition is one Lua script.

Keys under a prefix (one per site): ``<prefix>webhook-circuit:<endpoint>`` (hash: state,
failures, opened_at, open_seconds, probe_until, last_failure_at) and ``<prefix>webhook-circuits``
(the endpoints with failures on record). An endpoint that answers is forgotten, so the common
case keeps nothing. When Redis cannot be reached attempts go through and the log says so once
(and again when it is back): losing the breaker must not stop the deliveries it protects, nor fill
the log with a line per attempt, nor make every attempt wait for a connect timeout, so Redis is
asked again only every UNAVAILABLE_RETRY_SECONDS meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from cauldron_fabric.core.consumer.ports import CircuitState
from cauldron_fabric.core.delivery.circuit import EndpointCircuits, EndpointPolicy
from cauldron_fabric.core.urls import redact_url

log = logging.getLogger("cauldron_fabric.circuit")
KEEP_SECONDS = 7 * 24 * 3600  # an endpoint nobody calls any more is forgotten after a week
UNAVAILABLE_RETRY_SECONDS = 5.0  # how long attempts go unchecked after Redis could not be reached

SCRIPT = """
local key, index, op, now, endpoint = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3]
if op == 'success' or op == 'reset' then
	redis.call('DEL', key)
	redis.call('SREM', index, endpoint)
	return {1, 'closed', 0, '', '', ''}
end
local h = redis.call('HMGET', key, 'state', 'failures', 'opened_at', 'open_seconds', 'probe_until', 'last_failure_at')
local state, failures = h[1] or 'closed', tonumber(h[2] or '0')
local opened, open_s = tonumber(h[3] or 'x'), tonumber(h[4] or 'x')
local probe, last = tonumber(h[5] or 'x'), tonumber(h[6] or 'x')
local allowed, changed = 0, false
if op == 'acquire' then
	local probe_s = tonumber(ARGV[7])
	if state == 'closed' then
		allowed = 1
	elseif state == 'open' and now >= (opened or 0) + (open_s or 0) then
		state, probe, allowed, changed = 'half_open', now + probe_s, 1, true
	elseif state == 'half_open' and now >= (probe or 0) then
		probe, allowed, changed = now + probe_s, 1, true
	end
elseif op == 'unprobe' then
	if state == 'half_open' then
		probe, changed = now, true
	end
elseif op == 'failure' then
	local threshold, base, cap = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
	failures, last, changed = failures + 1, now, true
	if state == 'half_open' then
		state, opened, open_s, probe = 'open', now, math.min(2 * (open_s or base), cap), nil
	elseif state == 'closed' and failures >= threshold then
		state, opened, open_s = 'open', now, base
	end
end
if changed then
	redis.call('HSET', key, 'state', state, 'failures', failures, 'last_failure_at', tostring(last or ''),
		'opened_at', tostring(opened or ''), 'open_seconds', tostring(open_s or ''), 'probe_until', tostring(probe or ''))
	redis.call('EXPIRE', key, tonumber(ARGV[8]))
	redis.call('SADD', index, endpoint)
end
local retry = ''
if state == 'open' then retry = tostring((opened or 0) + (open_s or 0)) elseif state == 'half_open' then retry = tostring(probe or '') end
return {allowed, state, failures, tostring(opened or ''), retry, tostring(last or '')}
"""


def _text(value) -> str:
	return value.decode() if isinstance(value, bytes) else str(value or "")


def _float(value) -> float | None:
	text = _text(value)
	return float(text) if text else None


class RedisEndpointCircuits(EndpointCircuits):
	"""Endpoint circuits in Redis under ``prefix``."""

	def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "cauldron_fabric:"):
		self.url, self.prefix = url, prefix
		self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
		self._script = self.client.register_script(SCRIPT)
		self._lock = threading.Lock()
		self._unavailable_until = 0.0  # time.monotonic(): Redis is not asked before
		self._unavailable_since: float | None = None  # time.time() it was found unreachable

	def _run(
		self,
		op: str,
		endpoint: str,
		now: float,
		policy: EndpointPolicy | None = None,
		probe_seconds: float = 0.0,
	) -> tuple[bool, CircuitState]:
		policy = policy or EndpointPolicy()
		result = self._script(
			keys=[f"{self.prefix}webhook-circuit:{endpoint}", f"{self.prefix}webhook-circuits"],
			args=[
				op,
				repr(now),
				endpoint,
				policy.failure_threshold,
				policy.open_seconds,
				policy.max_open_seconds,
				repr(float(probe_seconds)),
				KEEP_SECONDS,
			],
		)
		allowed, state, failures, opened, retry, last = result
		return bool(allowed), CircuitState(
			endpoint, _text(state), int(failures), _float(opened), _float(retry), _float(last)
		)

	def acquire(self, endpoint: str, now: float, probe_seconds: float) -> tuple[bool, CircuitState]:
		"""Decides atomically whether an attempt may go; lets it go when Redis is unreachable."""
		result = self._safe("acquire", endpoint, now, probe_seconds=probe_seconds)
		return result if result is not None else (True, CircuitState(endpoint))

	def record_failure(self, endpoint: str, now: float, policy: EndpointPolicy) -> CircuitState:
		"""Counts a failure atomically (skipped when Redis is unreachable)."""
		return (self._safe("failure", endpoint, now, policy) or (False, CircuitState(endpoint)))[1]

	def record_success(self, endpoint: str, now: float) -> CircuitState:
		"""Forgets the endpoint atomically (skipped when Redis is unreachable)."""
		return (self._safe("success", endpoint, now) or (False, CircuitState(endpoint)))[1]

	def release_probe(self, endpoint: str, now: float) -> None:
		"""Frees the probe's slot atomically (skipped when Redis is unreachable)."""
		self._safe("unprobe", endpoint, now)

	def _safe(self, op: str, endpoint: str, now: float, policy=None, probe_seconds: float = 0.0):
		"""Runs ``op``; returns None, having said so once in the log, while Redis cannot be reached."""
		if time.monotonic() < self._unavailable_until:
			return None
		try:
			result = self._run(op, endpoint, now, policy, probe_seconds)
		except redis.RedisError as exc:
			with self._lock:
				first = self._unavailable_since is None
				self._unavailable_until = time.monotonic() + UNAVAILABLE_RETRY_SECONDS
				self._unavailable_since = self._unavailable_since or time.time()
			if first:
				log.warning(
					"Webhook endpoint circuits are unavailable (Redis at %s: %s): deliveries go on without"
					" them, so a receiver that is down is tried by each of its deliveries. Check Redis;"
					" it is asked again every %.0f s.",
					redact_url(self.url), exc, UNAVAILABLE_RETRY_SECONDS,
				)  # fmt: skip
			return None
		if self._unavailable_since is not None:
			with self._lock:
				since, self._unavailable_since = self._unavailable_since, None
			if since is not None:
				log.info(
					"Webhook endpoint circuits are back (Redis was unreachable for %.0f s).",
					time.time() - since,
				)
		return result

	def all(self, now: float) -> list[CircuitState]:
		"""Reads every endpoint with failures on record; one whose state expired is forgotten."""
		states = []
		for endpoint in sorted(_text(e) for e in self.client.smembers(f"{self.prefix}webhook-circuits")):
			state = self._run("get", endpoint, now)[1]
			if state.state == "closed" and not state.failures:
				self.client.srem(f"{self.prefix}webhook-circuits", endpoint)
				continue
			states.append(state)
		return states

	def reset(self, endpoint: str) -> None:
		"""Closes an endpoint's circuit and forgets it."""
		self._run("reset", endpoint, 0.0)

	def close(self) -> None:
		"""Closes the connection pool."""
		self.client.close()
