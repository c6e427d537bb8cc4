"""Retry timing: exponential backoff with full jitter and a ceiling."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
	"""Delay before attempt ``n``: ``base * factor ** (n - 1)``, capped, with jitter.

	``jitter`` is the fraction of the delay that is randomised, so that many relays or
	workers retrying the same outage do not hit the recovering broker in step.
	"""

	base: float = 0.5
	factor: float = 2.0
	maximum: float = 30.0
	jitter: float = 0.2

	def delay(self, attempt: int, rng: random.Random | None = None) -> float:
		"""Returns the seconds to wait before retry number ``attempt`` (1 for the first retry)."""
		raw = min(self.maximum, self.base * self.factor ** max(0, attempt - 1))
		spread = raw * self.jitter
		return max(0.0, raw - spread + (rng or random).random() * 2 * spread) if spread else raw
