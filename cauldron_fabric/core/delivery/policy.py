"""How persistently and how fast a subscription delivers: retry policy and rate limit."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.retry import Backoff

DEFAULT_BACKOFF = Backoff(base=5.0, factor=2.0, maximum=3600.0, jitter=0.2)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
	"""Attempts per delivery, exponential backoff with jitter between them, and the Retry-After cap."""

	max_attempts: int = 8
	backoff: Backoff = DEFAULT_BACKOFF
	max_retry_after: float = 3600.0

	def validate(self) -> None:
		"""Raises ConfigurationError when the numbers cannot work."""
		if not 1 <= self.max_attempts <= 100:
			raise ConfigurationError(
				f"Attempts must be between 1 and 100, not {self.max_attempts}.",
				hint="1 makes a single attempt with no retry.",
			)
		if self.backoff.base < 0 or self.backoff.maximum < self.backoff.base or self.backoff.factor < 1:
			raise ConfigurationError(
				"The retry backoff needs an initial delay of 0 (retry at once) or more, a factor of at "
				"least 1 and a maximum delay no smaller than the initial one."
			)
		if not 0 <= self.backoff.jitter <= 1:
			raise ConfigurationError(f"Jitter is a fraction between 0 and 1, not {self.backoff.jitter}.")

	def delay_after(
		self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
	) -> float | None:
		"""Returns the seconds to wait after failed attempt number ``attempt``, or None when it was the last.

		A receiver's ``Retry-After`` lengthens the backoff (it knows when it will be back), capped at
		``max_retry_after`` so a hostile or broken receiver cannot park a delivery for a year. It
		never shortens it: ``Retry-After: 0``, or a date its clock, behind ours, already sees as
		past, spent every attempt of a failing receiver within a second and dead-lettered the event.
		"""
		if attempt >= self.max_attempts:
			return None
		delay = self.backoff.delay(attempt, rng)
		if retry_after is not None:
			return max(delay, min(retry_after, self.max_retry_after))
		return delay


class TokenBucket:
	"""Allows ``rate`` deliveries per second on average and bursts of up to ``burst``."""

	def __init__(self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic):
		if rate <= 0:
			raise ConfigurationError(f"A rate limit must be positive, not {rate}.")
		self.rate, self.capacity, self.clock = float(rate), float(max(1, burst)), clock
		self.tokens = self.capacity
		self.updated = clock()
		self._lock = threading.Lock()

	def take(self) -> float:
		"""Takes one token; returns 0 when taken, else the seconds until one is free (nothing taken)."""
		with self._lock:
			now = self.clock()
			self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
			self.updated = now
			if self.tokens >= 1:
				self.tokens -= 1
				return 0.0
			return (1 - self.tokens) / self.rate

	def give_back(self) -> None:
		"""Returns a token taken for an attempt that did not go (never beyond the burst)."""
		with self._lock:
			self.tokens = min(self.capacity, self.tokens + 1)


@dataclass
class RateLimits:
	"""One token bucket per subscription, rebuilt when its limit changes (per process)."""

	clock: Callable[[], float] = time.monotonic
	buckets: dict[str, tuple[tuple[float, int], TokenBucket]] = field(default_factory=dict)
	lock: threading.Lock = field(default_factory=threading.Lock)

	def wait_for(self, subscription: str, rate: float, burst: int) -> float:
		"""Takes a token for ``subscription``; returns 0, or the seconds to wait when the limit is reached."""
		if rate <= 0:
			return 0.0
		with self.lock:
			entry = self.buckets.get(subscription)
			if entry is None or entry[0] != (rate, burst):
				entry = ((rate, burst), TokenBucket(rate, burst, self.clock))
				self.buckets[subscription] = entry
		return entry[1].take()

	def give_back(self, subscription: str) -> None:
		"""Returns the token ``wait_for`` took for an attempt deferred after all."""
		with self.lock:
			entry = self.buckets.get(subscription)
		if entry is not None:
			entry[1].give_back()
