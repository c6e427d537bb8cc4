"""Retry timing: exponential growth, the ceiling, jitter, and attempt counts of any size."""

import random

import pytest

from cauldron_fabric.core.retry import Backoff


def test_delays_double_up_to_the_ceiling():
	backoff = Backoff(base=0.5, factor=2, maximum=30, jitter=0)
	assert [backoff.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_jitter_stays_within_its_fraction_of_the_delay():
	below = Backoff(base=10, factor=2, maximum=100, jitter=0.2)
	delays = [below.delay(1, random.Random(n)) for n in range(200)]
	assert min(delays) >= 8 and max(delays) <= 12 and max(delays) - min(delays) > 3
	backoff = Backoff(base=10, factor=2, maximum=10, jitter=0.2)
	rng = random.Random(7)
	delays = [backoff.delay(3, rng) for _ in range(500)]
	assert min(delays) >= 8 and max(delays) <= 10  # at the ceiling: spread below it only
	assert max(delays) - min(delays) > 1.5  # actually spread, not constant


@pytest.mark.parametrize("attempt", [1026, 10**6, 10**12])
def test_a_very_long_outage_keeps_the_ceiling_instead_of_overflowing(attempt):
	# attempts grow by one per failed cycle, without bound, for as long as an outage lasts
	assert Backoff(base=0.5, factor=2, maximum=30, jitter=0).delay(attempt) == 30
	assert 24 <= Backoff(factor=10.0).delay(attempt) <= 30


def test_jitter_never_takes_a_delay_past_the_ceiling():
	backoff = Backoff(base=1.0, factor=2.0, maximum=60.0, jitter=0.5)
	rng = random.Random(7)
	at_ceiling = [backoff.delay(20, rng) for _ in range(500)]
	assert max(at_ceiling) <= 60.0
	assert min(at_ceiling) >= 30.0 and len(set(at_ceiling)) > 450, "still spread below the ceiling"
