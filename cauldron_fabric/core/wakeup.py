"""Waking relays the moment events commit, over Redis pub/sub.

A producer publishes one short message after its transaction commits; idle relays block on
the channel instead of polling the database. A lost wake-up costs at most one poll interval:
relays still poll, so correctness never depends on Redis.
"""

from __future__ import annotations

import logging
import threading

import redis

from cauldron_fabric.core.ports import Waker

log = logging.getLogger("cauldron_fabric.wakeup")


class RedisWaker(Waker):
	"""Wakes relays subscribed to one channel (one per site)."""

	def __init__(self, url: str, channel: str):
		self.url = url
		self.channel = channel
		self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
		self._pubsub = None

	def _subscription(self):
		if self._pubsub is None:
			pubsub = self._client.pubsub(ignore_subscribe_messages=True)
			pubsub.subscribe(self.channel)
			self._pubsub = pubsub
		return self._pubsub

	def wait(self, timeout: float) -> bool:
		"""Blocks until a wake-up arrives or ``timeout`` passes; drains queued wake-ups."""
		try:
			pubsub = self._subscription()
			woken = pubsub.get_message(timeout=timeout) is not None
			while woken and pubsub.get_message(timeout=0) is not None:
				pass
			return woken
		except redis.RedisError as exc:
			log.warning("relay wake-up channel unavailable, polling instead: %s", exc)
			self._pubsub = None
			threading.Event().wait(timeout)
			return False

	def notify(self) -> None:
		"""Publishes a wake-up; swallows Redis errors (relays poll anyway)."""
		try:
			self._client.publish(self.channel, b"1")
		except redis.RedisError as exc:
			log.warning("could not wake relays: %s", exc)

	def close(self) -> None:
		"""Unsubscribes and closes the connection."""
		if self._pubsub is not None:
			try:
				self._pubsub.close()
			except redis.RedisError:
				pass
		self._client.close()


class ThreadWaker(Waker):
	"""Wakes relays in the same process (tests, embedded use)."""

	def __init__(self):
		self._event = threading.Event()

	def wait(self, timeout: float) -> bool:
		"""Blocks until notified or ``timeout`` passes."""
		woken = self._event.wait(timeout)
		self._event.clear()
		return woken

	def notify(self) -> None:
		"""Wakes the waiting relay."""
		self._event.set()
