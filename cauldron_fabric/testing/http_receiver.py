"""A real HTTP/1.1 receiver for webhook tests: answers from a script and records every request.

Shared by the core suite and the Frappe suite. It listens on 127.0.0.1 (so webhooks to it need
loopback on the allow-list) and can fail on purpose: any status, body, headers and delay.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reply:
	"""One scripted answer."""

	status: int = 200
	body: bytes = b'{"ok":true}'
	headers: tuple = ()
	delay: float = 0.0
	body_delay: float = 0.0  # between the status line and headers, and the body
	reason: str | None = None  # the status line's reason phrase; None: the standard one
	trickle: float = 0.0  # between one byte of the body and the next
	chunked: bool = False  # the body in chunks (one a byte when trickled), the last after a trickle


@dataclass
class Received:
	"""One request as the receiver saw it (header names in lower case)."""

	method: str
	path: str
	headers: dict
	body: bytes
	started: float
	finished: float = 0.0


@dataclass
class Receiver:
	"""A threaded HTTP server on 127.0.0.1; per path, scripted replies first, then ``default``."""

	default: Reply = field(default_factory=Reply)
	requests: list = field(default_factory=list)
	script: dict = field(default_factory=lambda: defaultdict(deque))
	lock: threading.Lock = field(default_factory=threading.Lock)
	connections: int = 0  # TCP connections accepted

	def start(self, tls_context=None) -> Receiver:
		"""Starts serving in a daemon thread; ``tls_context`` makes it HTTPS."""
		receiver = self

		class Handler(http.server.BaseHTTPRequestHandler):
			protocol_version = "HTTP/1.1"
			disable_nagle_algorithm = True  # else keep-alive replies stall 40 ms on delayed ACKs

			def setup(self):
				with receiver.lock:
					receiver.connections += 1
				super().setup()

			def do_POST(self):
				length = int(self.headers.get("Content-Length") or 0)
				record = Received(
					self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
					self.rfile.read(length), time.monotonic(),
				)  # fmt: skip
				with receiver.lock:
					receiver.requests.append(record)
					queue = receiver.script[self.path]
					reply = queue.popleft() if queue else receiver.default
				time.sleep(reply.delay)
				try:
					self.send_response(reply.status, reply.reason)
					for name, value in reply.headers:
						self.send_header(name, value)
					if reply.chunked:
						self.send_header("Transfer-Encoding", "chunked")
					else:
						self.send_header("Content-Length", str(len(reply.body)))
					self.end_headers()
					if reply.body_delay:
						self.wfile.flush()
						time.sleep(reply.body_delay)
					self._write_body(reply)
				except OSError:
					pass  # the sender gave up (timeout) and closed the connection
				record.finished = time.monotonic()

			do_PUT = do_PATCH = do_POST

			def _write_body(self, reply: Reply) -> None:
				frame = _chunk if reply.chunked else bytes
				if not reply.trickle:
					self.wfile.write(frame(reply.body))
				for index in range(len(reply.body) if reply.trickle else 0):
					self.wfile.write(frame(reply.body[index : index + 1]))
					self.wfile.flush()
					time.sleep(reply.trickle)
				if reply.chunked:
					self.wfile.write(_chunk(b""))  # the last chunk ends the body

			def log_message(self, *args):
				pass

		self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
		self.server.daemon_threads = True
		if tls_context is not None:
			self.server.socket = tls_context.wrap_socket(self.server.socket, server_side=True)
		threading.Thread(target=self.server.serve_forever, daemon=True).start()
		return self

	@property
	def port(self) -> int:
		"""Returns the port the receiver listens on."""
		return self.server.server_address[1]

	def url(self, path: str = "/hook", host: str = "127.0.0.1", scheme: str = "http") -> str:
		"""Returns the receiver's URL for ``path``."""
		return f"{scheme}://{host}:{self.port}{path}"

	def reply(self, path: str, *replies: Reply) -> None:
		"""Queues scripted replies for the next requests to ``path``."""
		with self.lock:
			self.script[path].extend(replies)

	def on(self, path: str) -> list[Received]:
		"""Returns the requests received on ``path`` so far."""
		with self.lock:
			return [r for r in self.requests if r.path == path]

	def wait_for(self, path: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
		"""Waits until ``count`` requests reached ``path`` (or ``timeout`` passes); returns them."""
		deadline = time.monotonic() + timeout
		while len(self.on(path)) < count and time.monotonic() < deadline:
			time.sleep(0.02)
		return self.on(path)

	def stop(self) -> None:
		"""Stops serving and closes the socket."""
		self.server.shutdown()
		self.server.server_close()


def _chunk(data: bytes) -> bytes:
	return b"%x\r\n%s\r\n" % (len(data), data)


class SlowReader:
	"""A receiver on 127.0.0.1 that reads its first ``slow`` requests a few bytes at a time, never
	answering them, then reads the next ones whole and answers 200 (``answered`` counts them)."""

	def __init__(self, slow: int = 1, pause: float = 0.01):
		self.slow, self.pause, self.answered = slow, pause, 0
		self.server = socket.socket()
		# A small receive window, so the sender's upload blocks after a few kilobytes.
		self.server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
		self.server.bind(("127.0.0.1", 0))
		self.server.listen()
		threading.Thread(target=self._serve, daemon=True).start()

	def url(self, path: str = "/hook") -> str:
		"""Returns the receiver's URL for ``path``."""
		return f"http://127.0.0.1:{self.server.getsockname()[1]}{path}"

	def _serve(self) -> None:
		while True:
			try:
				connection, _ = self.server.accept()
			except OSError:
				return  # stopped
			serve, self.slow = (self._read_slowly, self.slow - 1) if self.slow > 0 else (self._answer, 0)
			threading.Thread(target=serve, args=(connection,), daemon=True).start()

	def _read_slowly(self, connection: socket.socket) -> None:
		with connection, contextlib.suppress(OSError):  # the sender gave up and closed it
			while connection.recv(16):
				time.sleep(self.pause)

	def _answer(self, connection: socket.socket) -> None:
		with connection, contextlib.suppress(OSError):
			stream = connection.makefile("rb")
			length = 0
			while (line := stream.readline()) not in (b"\r\n", b""):
				name, _, value = line.decode("latin-1").partition(":")
				if name.strip().lower() == "content-length":
					length = int(value)
			stream.read(length)
			self.answered += 1  # before the answer, which the sender may act on at once
			connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

	def stop(self) -> None:
		"""Stops accepting connections."""
		self.server.close()


class SlowAcceptor:
	"""A listener on 127.0.0.1 whose backlog is full, so the kernel drops the SYNs of new
	connections; ``accept_after`` seconds later (never when None) it makes room, and the next
	SYN the sender retries (Linux: 1 s after the first) connects. It never says a word: an HTTPS
	sender then waits on a TLS handshake that never ends."""

	def __init__(self, accept_after: float | None = None):
		self.server = socket.socket()
		self.server.bind(("127.0.0.1", 0))
		self.server.listen(0)  # room for one connection waiting to be accepted
		self.filler = socket.create_connection(self.server.getsockname(), timeout=5)
		self.accepted: list[socket.socket] = []
		if accept_after is not None:
			threading.Timer(accept_after, self._make_room).start()

	def url(self, path: str = "/hook", scheme: str = "https") -> str:
		"""Returns the listener's URL for ``path``."""
		return f"{scheme}://127.0.0.1:{self.server.getsockname()[1]}{path}"

	def _make_room(self) -> None:
		with contextlib.suppress(OSError):  # stopped
			self.accepted.append(self.server.accept()[0])

	def stop(self) -> None:
		"""Closes the listener and every connection."""
		for sock in (self.server, self.filler, *self.accepted):
			sock.close()


# A threaded HTTP/1.1 server answering 200 to every POST, for benchmarks: run as its own
# process so that it never competes with the sender for the GIL.
OK_RECEIVER_SCRIPT = """
import contextlib
import http.server
import socket
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else keep-alive replies stall 40 ms on delayed ACKs
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def start_ok_receiver(path: str = "/hook") -> tuple[subprocess.Popen, str]:
	"""Starts the answering-200 receiver process; returns it and the URL of ``path`` on it."""
	process = subprocess.Popen([sys.executable, "-c", OK_RECEIVER_SCRIPT], stdout=subprocess.PIPE, text=True)
	port = int(process.stdout.readline())
	return process, f"http://127.0.0.1:{port}{path}"
