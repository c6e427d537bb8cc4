"""One deadline for a whole HTTP request, its upload and its answer, not only for each read.

urllib3's read timeout bounds each read from the socket: a receiver sending its status line and
headers a byte at a time, each within it, would hold a delivery worker without limit, long
enough for its claim to lapse and the event to be sent twice. Sending the request is bounded by
the time left too, not by the socket's connect timeout (at most 5 s), which cut a large body
read slowly after 5 s whatever the subscription allowed. Connecting (TCP, then TLS for HTTPS)
has what is left of the deadline too, at most CONNECT_TIMEOUT for both steps together: each had
its own timeout on top of the deadline, and an attempt lasted up to its timeout and 5 s more.
The connections of these pools send under the deadline set by ``request_deadline`` and shut
their socket down when it passes, which ends the blocked write or read with a connection error.
One watchdog thread serves every request: a timer thread per request doubled the cost of a
delivery.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
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
	connect_seconds: float | None = None  # what the last connection had to be accepted in
	# What the TLS handshake had once the receiver accepted TCP (HTTPS only); None before.
	handshake_seconds: float | None = None

	def seconds_left(self, until: float | None = None) -> float:
		"""Returns the seconds left until ``until`` (the deadline by default), never 0 or less."""
		return max((self.deadline if until is None else until) - time.monotonic(), MIN_SOCKET_TIMEOUT)


# Seconds a receiver has to accept the connection (TCP, and TLS for HTTPS), whatever its timeout.
CONNECT_TIMEOUT = 5.0
# A socket timeout of 0 would make the socket non-blocking; past the deadline the watchdog cuts.
MIN_SOCKET_TIMEOUT = 0.001
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
	"""A socket to cut at ``deadline`` unless the answer came first (``_Watchdog.disarm``)."""

	deadline: float
	cut: Callable[[], None]
	active: bool = True


# Turned-off alarms the watchdog lets wait in its heap before it drops them.
FORGET_TURNED_OFF_AT = 256


class _Watchdog:
	"""One daemon thread that cuts the sockets of requests still unanswered at their deadline."""

	def __init__(self) -> None:
		self._wake = threading.Condition()
		self._alarms: list[tuple[float, int, _Alarm]] = []
		self._turned_off = 0  # alarms in the heap that were turned off before their deadline
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

	def disarm(self, alarm: _Alarm) -> None:
		"""Turns ``alarm`` off; once this returns, its cut cannot come.

		The watchdog checks and cuts under its lock: turned off without it, an alarm the watchdog
		had just found on was cut after the block ended, under the next request on the connection.
		"""
		with self._wake:
			if not alarm.active:  # it went off: the watchdog has taken it out of the heap
				return
			alarm.active = False
			self._turned_off += 1
			# An answered request's alarm would wait in the heap for its deadline, holding its
			# connection: with a long timeout, many thousands of them. Dropped once they are most of it.
			if self._turned_off > FORGET_TURNED_OFF_AT and 2 * self._turned_off > len(self._alarms):
				self._alarms = [entry for entry in self._alarms if entry[2].active]
				heapq.heapify(self._alarms)
				self._turned_off = 0

	def _run(self) -> None:
		with self._wake:
			while True:
				now = time.monotonic()
				while self._alarms and self._alarms[0][0] <= now:
					alarm = heapq.heappop(self._alarms)[2]
					if alarm.active:
						alarm.active = False
						alarm.cut()
					else:
						self._turned_off -= 1
				self._wake.wait(self._alarms[0][0] - now if self._alarms else None)


WATCHDOG = _Watchdog()
# A forked worker (RQ's work horse) has none of the parent's threads, and maybe a held lock.
os.register_at_fork(after_in_child=WATCHDOG.__init__)


@contextlib.contextmanager
def cut_at(deadline: float, connection) -> Iterator[None]:
	"""Shuts the socket of ``connection`` (one of these pools') down at ``deadline`` unless the
	block ended first: a read waiting on it then ends with a connection error. None (a response
	read to its end already gave its connection back) needs no cutting."""
	if connection is None:
		yield
		return
	alarm = WATCHDOG.arm(deadline, connection._cut)
	connection._armed = True
	try:
		yield
	finally:
		WATCHDOG.disarm(alarm)
		connection._armed = False
		if (pool := connection._given_back_to) is not None:  # the body ended inside the block
			connection._given_back_to = None
			pool._put_conn(connection)


class FinalResponse(http.client.HTTPResponse):
	"""A response that reads past interim (1xx) responses to the final one (RFC 9110 15.2).

	http.client skips ``100 Continue`` only: a receiver that sent ``102 Processing`` or ``103
	Early Hints`` first was taken to have answered 1xx, not the 2xx or 5xx that followed, and the
	event went to the dead letters although it was delivered, or should have been retried. The
	deadline bounds a receiver sending interim responses for ever.
	"""

	def _read_status(self):
		version, status, reason = super()._read_status()
		if 100 < status < 200 and status != 101:  # begin() skips a 100's headers and reads on
			return version, http.client.CONTINUE, reason
		return version, status, reason

	def begin(self) -> None:
		super().begin()
		if self.status == 101:  # the connection speaks another protocol now: never reuse it
			self.will_close = True


class _DeadlineMixin:
	"""Sends the request and reads the response head under the deadline; a watchdog cuts the
	socket when it passes."""

	response_class = FinalResponse
	sock: socket.socket | None
	timeout: float | None
	_connect_deadline: float | None = None
	_armed = False  # a watchdog alarm may cut this connection (inside cut_at)
	_given_back_to: HTTPConnectionPool | None = None  # the pool it goes back to once disarmed

	def connect(self) -> None:
		"""Connects (TCP, and TLS for HTTPS) within the time left, and notes in the request's
		progress that it did."""
		progress = _PROGRESS.get()
		if progress is None:
			return super().connect()
		self._connect_deadline = min(progress.deadline, time.monotonic() + CONNECT_TIMEOUT)
		self.timeout = progress.connect_seconds = progress.seconds_left(self._connect_deadline)
		try:
			super().connect()
		finally:
			self._connect_deadline = None
		progress.connected = True

	def _new_conn(self) -> socket.socket:
		"""Opens the TCP connection; the TLS handshake on it has what the TCP connect left."""
		sock = super()._new_conn()
		if (progress := _PROGRESS.get()) is not None and self._connect_deadline is not None:
			left = progress.seconds_left(self._connect_deadline)
			sock.settimeout(left)
			if isinstance(self, HTTPSConnection):
				progress.handshake_seconds = left
		return sock

	def request(self, *args, **kwargs):
		progress = _PROGRESS.get()
		if progress is None:
			return super().request(*args, **kwargs)
		if self.sock is not None:  # kept alive from an earlier request, or connected for TLS
			progress.connected = True
		with cut_at(progress.deadline, self):
			super().request(*args, **kwargs)
		progress.sent = True

	def send(self, data) -> None:
		"""Sends under the time left: the socket's timeout is the connect timeout until here."""
		progress = _PROGRESS.get()
		if progress is not None and self.sock is not None:
			self.sock.settimeout(progress.seconds_left())
		super().send(data)

	def getresponse(self, *args, **kwargs):
		progress = _PROGRESS.get()
		if progress is None:
			return super().getresponse(*args, **kwargs)
		with cut_at(progress.deadline, self):
			return super().getresponse(*args, **kwargs)

	def _cut(self) -> None:
		sock = self.sock
		if sock is not None:
			with contextlib.suppress(OSError):  # already closed by the reader
				sock.shutdown(socket.SHUT_RDWR)


class DeadlineHTTPConnection(_DeadlineMixin, HTTPConnection):
	"""An HTTP connection whose response head must arrive by the deadline."""


class DeadlineHTTPSConnection(_DeadlineMixin, HTTPSConnection):
	"""An HTTPS connection whose response head must arrive by the deadline."""


class _DeadlinePoolMixin:
	"""Takes a connection back only once no alarm can cut it.

	urllib3 gives a connection back inside the read that ends the response body, while the
	alarm armed for that read still runs; the pool is shared by the sending threads, so a cut
	then would end another thread's request on it, after it was sent, and its retry would
	deliver the event twice. Such a connection goes back when cut_at disarms its alarm.
	"""

	def _put_conn(self, conn) -> None:
		if conn is not None and conn._armed:
			conn._given_back_to = self
			return
		super()._put_conn(conn)


class DeadlineHTTPConnectionPool(_DeadlinePoolMixin, HTTPConnectionPool):
	"""A pool of DeadlineHTTPConnection."""

	ConnectionCls = DeadlineHTTPConnection


class DeadlineHTTPSConnectionPool(_DeadlinePoolMixin, HTTPSConnectionPool):
	"""A pool of DeadlineHTTPSConnection."""

	ConnectionCls = DeadlineHTTPSConnection


POOL_CLASSES = {"http": DeadlineHTTPConnectionPool, "https": DeadlineHTTPSConnectionPool}
