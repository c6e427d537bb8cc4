"""One deadline for a whole HTTP request, its upload and its answer, not only for each read.

urllib3's read timeout bounds each read from the socket: a receiver sending its status line and
headers a byte at a time, each within it, would hold a delivery worker without limit, long
enough for its claim to lapse and the event to be sent twice. Sending the request is bounded by
the time left too, not by the socket's connect timeout (at most 5 s), which cut a large body
read slowly after 5 s whatever the subscription allowed. The connections of these pools send under the deadline set by ``request_deadline`` and shut their
socket down when it passes, which ends the blocked write or read with a connection error. One
watchdog thread serves every request: a timer thread per request doubled the cost of a delivery.
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


@dataclass(eq=False, slots=True)
class RequestProgress:
	"""The deadline (``time.monotonic``) of the request under way, whether it had a connection
	(TCP, and TLS for HTTPS) and whether it was all sent.

	Sent means written to the connection: the kernel's buffers may still hold the end of it.
	"""

	deadline: float
	connected: bool = False
	sent: bool = False


_PROGRESS: ContextVar[RequestProgress | None] = ContextVar("http_request_progress", default=None)


@contextlib.contextmanager
def request_deadline(seconds: float) -> Iterator[RequestProgress]:
	"""Gives the request made inside it (in this thread) ``seconds`` from now to be sent and answered.

	The progress it yields tells, when the deadline cut the request, whether the receiver had
	accepted the connection and taken all of the request.
	"""
	progress = RequestProgress(time.monotonic() + seconds)
	token = _PROGRESS.set(progress)
	try:
		yield progress
	finally:
		_PROGRESS.reset(token)


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
# A socket timeout of 0 would make the socket non-blocking; past the deadline the watchdog cuts.
MIN_SOCKET_TIMEOUT = 0.001
# A forked worker (RQ's work horse) has none of the parent's threads, and maybe a held lock.
os.register_at_fork(after_in_child=WATCHDOG.__init__)


class _DeadlineMixin:
	"""Sends the request and reads the response head under the deadline; a watchdog cuts the
	socket when it passes."""

	sock: socket.socket | None

	def connect(self) -> None:
		"""Connects (TCP, and TLS for HTTPS) and notes in the request's progress that it did."""
		super().connect()
		if (progress := _PROGRESS.get()) is not None:
			progress.connected = True

	def request(self, *args, **kwargs):
		progress = _PROGRESS.get()
		if progress is None:
			return super().request(*args, **kwargs)
		if self.sock is not None:  # kept alive from an earlier request, or connected for TLS
			progress.connected = True
		alarm = WATCHDOG.arm(progress.deadline, self._cut)
		try:
			super().request(*args, **kwargs)
		finally:
			alarm.active = False
		progress.sent = True

	def send(self, data) -> None:
		"""Sends under the time left: the socket's timeout is the connect timeout until here."""
		progress = _PROGRESS.get()
		if progress is not None and self.sock is not None:
			self.sock.settimeout(max(progress.deadline - time.monotonic(), MIN_SOCKET_TIMEOUT))
		super().send(data)

	def getresponse(self, *args, **kwargs):
		progress = _PROGRESS.get()
		if progress is None:
			return super().getresponse(*args, **kwargs)
		alarm = WATCHDOG.arm(progress.deadline, self._cut)
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
