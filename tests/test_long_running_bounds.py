"""What a long-running process keeps stays bounded by what is in flight, not by how long it ran."""

import threading
import time

from cauldron_fabric.core.delivery.deadlines import _Watchdog

LONG_TIMEOUT = 600.0  # a subscription's timeout of ten minutes


def test_the_webhook_watchdog_forgets_alarms_turned_off_long_before_their_deadline():
	# Each webhook attempt arms up to three alarms (sending, the answer, its body) and turns them
	# off once answered. Kept until their deadline, a delivery worker with a long timeout held
	# every answered request's alarm and connection for that long: 50 webhooks a second with a
	# 600 s timeout made 90,000 of them.
	watchdog = _Watchdog()
	for _ in range(20_000):
		watchdog.disarm(watchdog.arm(time.monotonic() + LONG_TIMEOUT, lambda: None))
	assert len(watchdog._alarms) <= 1_000


def test_an_alarm_left_on_still_cuts_after_the_watchdog_dropped_the_others():
	watchdog = _Watchdog()
	cut = threading.Event()
	watchdog.arm(time.monotonic() + 0.3, cut.set)
	for _ in range(5_000):
		watchdog.disarm(watchdog.arm(time.monotonic() + LONG_TIMEOUT, lambda: None))
	assert cut.wait(5)


def test_alarms_that_went_off_before_being_turned_off_do_not_stop_the_forgetting():
	# A cut alarm is turned off afterwards too (the request's block ends with its error).
	watchdog = _Watchdog()
	fired = threading.Event()
	for _ in range(200):
		fired.clear()
		alarm = watchdog.arm(time.monotonic(), fired.set)
		assert fired.wait(5)
		watchdog.disarm(alarm)
	for _ in range(20_000):
		watchdog.disarm(watchdog.arm(time.monotonic() + LONG_TIMEOUT, lambda: None))
	assert len(watchdog._alarms) <= 1_000
