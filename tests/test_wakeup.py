"""Wake-ups over real Redis: relays block on a channel, and savers send without waiting on Redis."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import redis

from cauldron_fabric.core.wakeup import BackgroundWakeups, RedisWaker
from conftest import REDIS_URL

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def channel():
	return f"fabric-test:wake:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def waker(channel):
	"""A relay's waker subscribed to the test channel before anything is sent."""
	waker = RedisWaker(REDIS_URL, channel)
	assert waker.wait(0.05) is False  # subscribes; nothing sent yet
	yield waker
	waker.close()


@pytest.fixture
def client():
	client = redis.Redis.from_url(REDIS_URL)
	yield client
	client.close()


def test_a_background_wake_up_reaches_the_waiting_relay(waker, channel, client):
	wakeups = BackgroundWakeups(lambda name: client.publish(name, b"1"))
	wakeups.send(channel)
	assert waker.wait(5) is True
	assert wakeups.flush(5) is True


def test_send_returns_while_redis_is_slow_and_repeated_wake_ups_are_sent_once(client):
	publishing, redis_answers = threading.Event(), threading.Event()
	sent: list[str] = []

	def publish(name: str) -> None:
		publishing.set()
		redis_answers.wait(10)  # Redis hangs until the test lets it answer
		client.publish(name, b"1")
		sent.append(name)

	wakeups = BackgroundWakeups(publish)
	wakeups.send("outbox")
	assert publishing.wait(5)  # the thread took it and is stuck in publish
	for _ in range(5):
		wakeups.send("outbox")
		wakeups.send("deliveries")
	assert sent == [], "send() must not wait for Redis"
	assert wakeups.flush(0.1) is False
	redis_answers.set()
	assert wakeups.flush(5) is True
	assert sent == ["outbox", "outbox", "deliveries"]


class Records(logging.Handler):
	def __init__(self):
		super().__init__()
		self.messages: list[str] = []

	def emit(self, record: logging.LogRecord) -> None:
		self.messages.append(record.getMessage())


def test_a_failed_publish_is_logged_and_later_wake_ups_still_go_out(waker, channel, client):
	failures = ["Redis refused"]
	records = Records()
	logging.getLogger("cauldron_fabric.wakeup").addHandler(records)

	def publish(name: str) -> None:
		if failures:
			raise redis.ConnectionError(failures.pop())
		client.publish(name, b"1")

	wakeups = BackgroundWakeups(publish)
	wakeups.send(channel)
	assert wakeups.flush(5) is True
	logging.getLogger("cauldron_fabric.wakeup").removeHandler(records)
	assert records.messages == ["could not publish the wake-up on " + channel]
	assert waker.wait(0.2) is False
	wakeups.send(channel)
	assert waker.wait(5) is True


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_worker_sends_its_own_wake_ups(waker, channel, client):
	wakeups = BackgroundWakeups(lambda name: redis.Redis.from_url(REDIS_URL).publish(name, b"1"))
	wakeups.send("parent-channel")  # the parent's thread exists before the fork
	assert wakeups.flush(5) is True
	pid = os.fork()
	if pid == 0:  # the child: its own thread, started on first use
		wakeups.send(channel)
		os._exit(0 if wakeups.flush(5) else 1)
	_, status = os.waitpid(pid, 0)
	assert os.waitstatus_to_exitcode(status) == 0
	assert waker.wait(5) is True


def test_what_is_queued_at_exit_is_still_sent(waker, channel):
	script = (
		"import redis\n"
		"from cauldron_fabric.core.wakeup import BackgroundWakeups\n"
		f"client = redis.Redis.from_url({REDIS_URL!r})\n"
		"def publish(name):\n"
		"    import time; time.sleep(0.2)\n"  # still publishing when the main thread ends
		"    client.publish(name, b'1')\n"
		f"BackgroundWakeups(publish).send({channel!r})\n"
	)
	subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=30)
	assert waker.wait(5) is True
