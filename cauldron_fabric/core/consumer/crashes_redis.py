"""Handler runs that never came back, counted in Redis so that the count outlives the process.

One key per group and event (``<prefix>starts:<group>:<event id>``), incremented before the
handlers run and deleted when they return. The delete of one event goes out with the increment
of the next (one round trip per event) or at the end of the consumer's round, whichever comes
first: an event that failed and was retried is not processed, and the member that takes its
retry must not find it counted. A key expires after a day, so starts cut short by unrelated
restarts (deployments, a killed worker) do not add up for ever. When Redis cannot be reached nothing is counted and the consumer goes on.
"""

from __future__ import annotations

import logging

import redis

from cauldron_fabric.core.consumer.ports import CrashCounter

log = logging.getLogger("cauldron_fabric.consumer")

KEEP_SECONDS = 24 * 3600


class RedisCrashCounter(CrashCounter):
	"""Counts unfinished handler runs under ``prefix`` in the Redis at ``url``."""

	def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "cauldron_fabric:"):
		self.prefix = prefix
		self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
		self._forget: list[str] = []
		self._counted: set[str] = set()  # counted in Redis and not finished yet

	def _key(self, group: str, event_id: str) -> str:
		return f"{self.prefix}starts:{group}:{event_id}"

	def started(self, group: str, event_id: str) -> int:
		key = self._key(group, event_id)
		pipe = self.client.pipeline(transaction=False)
		if self._forget:
			pipe.delete(*self._forget)
		pipe.incr(key)
		pipe.expire(key, KEEP_SECONDS)
		try:
			results = pipe.execute()
		except redis.RedisError as exc:
			log.warning("cannot count handler runs of %s (crash protection off meanwhile): %s", event_id, exc)
			return 0
		self._forget.clear()
		self._counted.add(key)
		return int(results[-2]) - 1

	def finished(self, group: str, event_id: str) -> None:
		# Only what was counted needs deleting: while Redis is down nothing is, and the list of
		# deletes would otherwise grow with every event of the outage.
		key = self._key(group, event_id)
		if key in self._counted:
			self._counted.discard(key)
			self._forget.append(key)

	def flush(self) -> None:
		if not self._forget:
			return
		try:
			self.client.delete(*self._forget)
		except redis.RedisError as exc:
			log.warning("cannot clear handler run counts (they expire): %s", exc)
			return
		self._forget.clear()

	def close(self) -> None:
		try:
			self.flush()
		finally:
			self.client.close()
