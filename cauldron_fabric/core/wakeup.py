"""Waking relays the moment events commit, over Redis pub/sub.

A producer publishes one short message after its transaction commits; idle relays block on
the channel instead of polling the database. A lost wake-up costs at most one poll interval:
relays still poll, so correctness never depends on Redis.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable

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


class BackgroundWakeups:
	"""Sends wake-ups from a background thread, so a commit never waits on Redis.

	A wake-up is only a hint (relays and workers poll anyway), and a user's save should not pay
	a Redis round trip for it: ``send`` queues the channel and returns. Wake-ups for a channel
	already queued are sent once. The thread starts on first use in each process (a forked
	worker starts its own), and what is still queued when the interpreter exits is sent then,
	for up to ``flush_timeout`` seconds.
	"""

	def __init__(self, publish: Callable[[str], None], flush_timeout: float = 1.0):
		self._publish = publish
		self._flush_timeout = flush_timeout
		self._reset()
		os.register_at_fork(after_in_child=self._reset)
		atexit.register(self.flush)

	def _reset(self) -> None:
		# In a forked child the parent's thread does not exist, and its lock was copied in
		# whatever state the fork found it; what the parent queued is the parent's to send.
		self._queued: dict[str, None] = {}  # an insertion-ordered set
		self._ready = threading.Condition(threading.Lock())
		self._idle = threading.Event()
		self._idle.set()
		self._thread: threading.Thread | None = None

	def send(self, channel: str) -> None:
		"""Queues a wake-up on ``channel``; returns at once."""
		with self._ready:
			if self._thread is None:
				self._thread = threading.Thread(target=self._run, name="fabric-wakeups", daemon=True)
				self._thread.start()
			self._queued[channel] = None
			self._idle.clear()
			self._ready.notify()

	def flush(self, timeout: float | None = None) -> bool:
		"""Waits until every queued wake-up is sent; tells whether that happened within ``timeout``."""
		return self._idle.wait(self._flush_timeout if timeout is None else timeout)

	def _run(self) -> None:
		ready = self._ready
		while True:
			with ready:
				while not self._queued:
					self._idle.set()
					ready.wait()
				channels = list(self._queued)
				self._queued.clear()
			for channel in channels:
				try:
					self._publish(channel)
				except Exception:
					log.warning("could not publish the wake-up on %s", channel, exc_info=True)
