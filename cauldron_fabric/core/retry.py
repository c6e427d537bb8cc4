"""Retry timing: exponential backoff with full jitter and a ceiling."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
	"""Delay before attempt ``n``: ``base * factor ** (n - 1)``, capped, with jitter.

	``jitter`` is the fraction of the delay that is randomised, so that many relays or
	workers retrying the same outage do not hit the recovering broker in step; at the
	ceiling the randomised part falls below it, never above.
	"""

	base: float = 0.5
	factor: float = 2.0
	maximum: float = 30.0
	jitter: float = 0.2

	def delay(self, attempt: int, rng: random.Random | None = None) -> float:
		"""Returns the seconds to wait before retry number ``attempt`` (1 for the first retry)."""
		raw = self._undisturbed(max(0, attempt - 1))
		spread = raw * self.jitter
		if not spread:
			return raw
		delay = raw - spread + (rng or random).random() * 2 * spread
		if delay > self.maximum:
			# Never past the ceiling, which admins set as the longest wait ("Max delay"): what
			# would overshoot is mirrored below it, so delays stay spread rather than pile up on it.
			delay = 2 * self.maximum - delay
		return max(0.0, delay)

	def longest(self, attempt: int) -> float:
		"""Returns the longest delay ``delay(attempt)`` can return, whatever its jitter."""
		return min(self.maximum, self._undisturbed(max(0, attempt - 1)) * (1 + self.jitter))

	def _undisturbed(self, exponent: int) -> float:
		# Attempts grow without bound through a long outage: past the ceiling the power is
		# never computed (2.0 ** 1025 overflows; an integer power of a huge count never ends).
		if self.base <= 0:
			return 0.0
		if self.factor > 1 and exponent >= math.log(max(self.maximum / self.base, 1.0), self.factor):
			return self.maximum
		return min(self.maximum, self.base * float(self.factor) ** exponent)
