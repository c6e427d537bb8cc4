"""Circuit states in Redis, shared by every worker and machine; each transition is one Lua script.

Keys under a prefix (one per site): ``<prefix>circuit:<target>`` (hash: state, opened_at,
probe_until), ``<prefix>circuit:<target>:failures`` (sorted set of failure times) and
``<prefix>circuits`` (the targets seen). When Redis cannot be reached the breaker lets calls
through and says so in the log: losing the breaker must not stop the requests it protects.
"""

from __future__ import annotations

import logging
import os

import redis

from cauldron_fabric.core.consumer.ports import CircuitPolicy, CircuitState, CircuitStore

log = logging.getLogger("cauldron_fabric.circuit")

SCRIPT = """
local key, fkey, index = KEYS[1], KEYS[2], KEYS[3]
local op, now = ARGV[1], tonumber(ARGV[2])
local threshold, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local open_s, probe_s = tonumber(ARGV[5]), tonumber(ARGV[6])
local state = redis.call('HGET', key, 'state') or 'closed'
local opened = tonumber(redis.call('HGET', key, 'opened_at') or 'x')
local probe = tonumber(redis.call('HGET', key, 'probe_until') or 'x')
local allowed = 0
if op == 'acquire' then
	if state == 'closed' then
		allowed = 1
	elseif state == 'open' and now >= (opened or 0) + open_s then
		state, probe, allowed = 'half_open', now + probe_s, 1
	elseif state == 'half_open' and now >= (probe or 0) then
		probe, allowed = now + probe_s, 1
	end
elseif op == 'failure' then
	redis.call('ZREMRANGEBYSCORE', fkey, '-inf', now - window)
	redis.call('ZADD', fkey, now, ARGV[8])
	redis.call('EXPIRE', fkey, math.ceil(window) + 1)
	if state == 'half_open' or (state == 'closed' and redis.call('ZCARD', fkey) >= threshold) then
		state, opened, probe = 'open', now, nil
	end
elseif op == 'success' then
	if state == 'half_open' then
		state, opened, probe = 'closed', nil, nil
		redis.call('DEL', fkey)
	end
elseif op == 'reset' then
	redis.call('DEL', key, fkey)
	redis.call('SREM', index, ARGV[7])
	return {0, 'closed', 0, '', '', ''}
end
if op ~= 'get' then
	redis.call('SADD', index, ARGV[7])
	redis.call('HSET', key, 'state', state)
	if opened then redis.call('HSET', key, 'opened_at', tostring(opened)) else redis.call('HDEL', key, 'opened_at') end
	if probe then redis.call('HSET', key, 'probe_until', tostring(probe)) else redis.call('HDEL', key, 'probe_until') end
end
local failures = redis.call('ZCOUNT', fkey, now - window, '+inf')
local last = redis.call('ZRANGE', fkey, -1, -1, 'WITHSCORES')
return {allowed, state, failures, tostring(opened or ''), tostring(probe or ''), last[2] or ''}
"""


def _float(value) -> float | None:
	text = value.decode() if isinstance(value, bytes) else str(value or "")
	return float(text) if text else None


class RedisCircuitStore(CircuitStore):
	"""Circuit states in Redis under ``prefix``."""

	def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "cauldron_fabric:"):
		self.url, self.prefix = url, prefix
		self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
		self._script = self.client.register_script(SCRIPT)

	def _run(self, op: str, target: str, now: float, policy: CircuitPolicy) -> tuple[bool, CircuitState]:
		key = f"{self.prefix}circuit:{target}"
		result = self._script(
			keys=[key, f"{key}:failures", f"{self.prefix}circuits"],
			args=[
				op,
				repr(now),
				policy.failure_threshold,
				policy.window_seconds,
				policy.open_seconds,
				policy.probe_seconds,
				target,
				f"{now!r}:{os.getpid()}:{os.urandom(4).hex()}",
			],
		)
		allowed, state, failures, opened, probe, last = result
		state = state.decode() if isinstance(state, bytes) else state
		opened_at = _float(opened)
		retry_at = (opened_at + policy.open_seconds) if state == "open" and opened_at else None
		if state == "half_open":
			retry_at = _float(probe)
		return bool(allowed), CircuitState(target, state, int(failures), opened_at, retry_at, _float(last))

	def acquire(self, target: str, now: float, policy: CircuitPolicy) -> tuple[bool, CircuitState]:
		"""Decides atomically whether a call may go; lets it go when Redis is unreachable."""
		try:
			return self._run("acquire", target, now, policy)
		except redis.RedisError as exc:
			log.warning("circuit state unavailable, letting the call to %s through: %s", target, exc)
			return True, CircuitState(target)

	def record_failure(self, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		"""Counts a failure atomically (logged and skipped when Redis is unreachable)."""
		return self._safe("failure", target, now, policy)

	def record_success(self, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		"""Reports a success atomically (logged and skipped when Redis is unreachable)."""
		return self._safe("success", target, now, policy)

	def _safe(self, op: str, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		try:
			return self._run(op, target, now, policy)[1]
		except redis.RedisError as exc:
			log.warning("could not record a %s of %s in the circuit: %s", op, target, exc)
			return CircuitState(target)

	def get(self, target: str, now: float, policy: CircuitPolicy) -> CircuitState:
		"""Reads one target's state."""
		return self._run("get", target, now, policy)[1]

	def all(self, now: float, policy: CircuitPolicy) -> list[CircuitState]:
		"""Reads the state of every target seen under this prefix."""
		targets = sorted(t.decode() for t in self.client.smembers(f"{self.prefix}circuits"))
		return [self.get(target, now, policy) for target in targets]

	def reset(self, target: str) -> None:
		"""Closes a target's circuit and forgets it."""
		self._run("reset", target, 0.0, CircuitPolicy())

	def close(self) -> None:
		"""Closes the connection pool."""
		self.client.close()
