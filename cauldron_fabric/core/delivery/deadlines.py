"""One deadline for the whole answer to an HTTP request, not only for each read.

urllib3's read timeout bounds each read from the socket: a receiver sending its status line and
headers a byte at a time, each within it, would hold a delivery worker without limit, long
enough for its claim to lapse and the event to be sent twice. The connections of these pools
shut their socket down when the deadline set by ``answer_deadline`` passes, which ends the
blocked read with a connection error. One watchdog thread serves every request: a timer thread
per request doubled the cost of a delivery.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# time.monotonic() by which the request under way must have its status line and headers.
_DEADLINE: ContextVar[float | None] = ContextVar("http_answer_deadline", default=None)


@contextlib.contextmanager
def answer_deadline(seconds: float) -> Iterator[None]:
	"""Gives the requests made inside it (in this thread) ``seconds`` from now to be answered."""
	token = _DEADLINE.set(time.monotonic() + seconds)
	try:
		yield
	finally:
		_DEADLINE.reset(token)


@dataclass(eq=False, slots=True)
class _Alarm:
	"""A socket to cut at ``deadline`` unless the answer came first (``active`` turned off)."""

	deadline: float
	cut: Callable[[], None]
	active: bool = True


class _Watchdog:
	"""One daemon thread that cuts the sockets of requests still unanswered at their deadline."""

	def __init__(self) -> None:
		self._wake = threading.Condition()
		self._alarms: list[tuple[float, int, _Alarm]] = []
		self._order = itertools.count()
		self._thread: threading.Thread | None = None

	def arm(self, deadline: float, cut: Callable[[], None]) -> _Alarm:
		"""Calls ``cut`` at ``deadline`` unless the returned alarm is turned off before."""
		alarm = _Alarm(deadline, cut)
		with self._wake:
			if self._thread is None:
				self._thread = threading.Thread(target=self._run, name="fabric-http-deadlines", daemon=True)
				self._thread.start()
			heapq.heappush(self._alarms, (deadline, next(self._order), alarm))
			if self._alarms[0][2] is alarm:  # earlier than the one the thread waits for
				self._wake.notify()
		return alarm

	def _run(self) -> None:
		with self._wake:
			while True:
				now = time.monotonic()
				while self._alarms and self._alarms[0][0] <= now:
					alarm = heapq.heappop(self._alarms)[2]
					if alarm.active:
						alarm.cut()
				self._wake.wait(self._alarms[0][0] - now if self._alarms else None)


WATCHDOG = _Watchdog()
# A forked worker (RQ's work horse) has none of the parent's threads, and maybe a held lock.
os.register_at_fork(after_in_child=WATCHDOG.__init__)


class _DeadlineMixin:
	"""Reads the response head under the deadline; a watchdog cuts the socket when it passes."""

	sock: socket.socket | None

	def getresponse(self, *args, **kwargs):
		deadline = _DEADLINE.get()
		if deadline is None:
			return super().getresponse(*args, **kwargs)
		alarm = WATCHDOG.arm(deadline, self._cut)
		try:
			return super().getresponse(*args, **kwargs)
		finally:
			alarm.active = False

	def _cut(self) -> None:
		sock = self.sock
		if sock is not None:
			with contextlib.suppress(OSError):  # already closed by the reader
				sock.shutdown(socket.SHUT_RDWR)


class DeadlineHTTPConnection(_DeadlineMixin, HTTPConnection):
	"""An HTTP connection whose response head must arrive by the deadline."""


class DeadlineHTTPSConnection(_DeadlineMixin, HTTPSConnection):
	"""An HTTPS connection whose response head must arrive by the deadline."""


class DeadlineHTTPConnectionPool(HTTPConnectionPool):
	"""A pool of DeadlineHTTPConnection."""

	ConnectionCls = DeadlineHTTPConnection


class DeadlineHTTPSConnectionPool(HTTPSConnectionPool):
	"""A pool of DeadlineHTTPSConnection."""

	ConnectionCls = DeadlineHTTPSConnection


POOL_CLASSES = {"http": DeadlineHTTPConnectionPool, "https": DeadlineHTTPSConnectionPool}
