"""A TCP proxy in front of a real broker that causes network faults which are not clean outages.

Unlike tcp_proxy.Proxy (a broker stopped or frozen), nothing here ever refuses a connection or
sends a reset unless told to. Faults, each on every connection open at the time:

* ``stall()`` … ``resume()``: nothing moves either way and nothing is lost; what was sent
  meanwhile arrives on resume (a partition that heals before TCP gives up).
* ``blackhole()`` … ``heal()``: nothing moves; on heal the connections of before are reset (the
  peer gave up meanwhile and answers the retransmissions with RST) and new ones flow. New
  connections made during the blackhole are accepted and never answered (a userspace proxy
  cannot drop SYNs: the kernel completes the handshake before accept).
* ``half_open()``: the broker's side is closed (the broker sees the client leave), the client's
  stays open and silent for ever, whatever it sends (lost NAT or firewall state); new
  connections flow.
* ``answering = False``: new connections are accepted and never answered, not even the
  protocol's handshake (a broker whose process hangs); they stay silent after it is set back.
* ``rate``: bytes per second each way (a slow link), None for full speed.

``fault_after_request(api_key, fault)`` applies a fault right after the client's next Kafka
request of that API key went through to the broker (for the Kafka protocol only): the broker
acts on it, its answer is caught by the fault.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from cauldron_fabric.testing.kafka_broker import KafkaBroker, free_port


class Link:
	"""One client connection and the broker connection it goes to (None when never answered)."""

	def __init__(self, client: socket.socket, upstream: socket.socket | None):
		self.client, self.upstream = client, upstream
		self.silent = upstream is None  # discards what the client sends, answers nothing
		self.reset = False


class FaultProxy:
	"""Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream`` with the faults told above."""

	def __init__(self, port: int, upstream: int, kafka: bool = False):
		self.port, self.upstream, self.kafka = port, upstream, kafka
		self.links: list[Link] = []
		self.held = False  # stalled or blackholed
		self.answering = True
		self.rate: float | None = None
		self.forwarded = 0  # bytes that reached the broker
		self.connections = 0
		self._armed: tuple[int, Callable[[], None]] | None = None
		self._armed_bytes: tuple[int, Callable[[], None]] | None = None
		self._lock = threading.Lock()
		self.listener: socket.socket | None = None

	def start(self) -> FaultProxy:
		self.listener = socket.create_server(("127.0.0.1", self.port))
		threading.Thread(target=self._accept, daemon=True).start()
		return self

	# -- faults -----------------------------------------------------------------------------

	def stall(self) -> None:
		self.held = True

	def resume(self) -> None:
		self.held = False

	blackhole = stall

	def heal(self) -> None:
		"""Ends a blackhole: the connections of before are reset, new ones flow."""
		with self._lock:
			links, self.links = self.links, []
		for link in links:
			link.reset = True
			for sock in (link.client, link.upstream):
				reset(sock)
		self.held = False

	def half_open(self) -> None:
		"""Closes the broker's side of every connection; the client's stays open and silent."""
		with self._lock:
			links, self.links = self.links, []
		for link in links:
			link.silent = True
			if link.upstream is not None:
				shut(link.upstream)

	def fault_after_request(self, api_key: int, fault: Callable[[], None]) -> None:
		self._armed = (api_key, fault)

	def fault_after_bytes(self, count: int, fault: Callable[[], None]) -> None:
		"""Applies ``fault`` once ``count`` more bytes from clients went through to the broker."""
		self._armed_bytes = (self.forwarded + count, fault)

	# -- forwarding -------------------------------------------------------------------------

	def _accept(self) -> None:
		while True:
			try:
				client, _ = self.listener.accept()
			except OSError:
				return
			self.connections += 1
			upstream = None
			if self.answering:
				upstream = socket.create_connection(("127.0.0.1", self.upstream))
			link = Link(client, upstream)
			with self._lock:
				self.links.append(link)
			threading.Thread(target=self._from_client, args=(link,), daemon=True).start()
			if upstream is not None:
				threading.Thread(target=self._from_broker, args=(link,), daemon=True).start()

	def _from_client(self, link: Link) -> None:
		try:
			for chunk in (kafka_requests if self.kafka else chunks)(link.client):
				if self._armed and self.kafka and struct.unpack(">h", chunk[4:6])[0] == self._armed[0]:
					# The fault first, then this request straight through: applied after it, the
					# broker's answer could pass before the fault did (a race that let the first
					# batch be acknowledged in one CI run).
					(_, fault), self._armed = self._armed, None
					fault()
					if link.upstream is not None:
						link.upstream.sendall(chunk)
						self.forwarded += len(chunk)
					continue
				self._forward(link, link.upstream, chunk)
		except OSError:
			pass
		finally:
			if not link.silent and not link.reset:
				shut(link.client, link.upstream)

	def _from_broker(self, link: Link) -> None:
		try:
			for chunk in chunks(link.upstream):
				self._forward(link, link.client, chunk)
		except OSError:
			pass
		finally:
			if not link.silent and not link.reset:
				shut(link.client, link.upstream)

	def _forward(self, link: Link, target: socket.socket | None, data: bytes) -> None:
		while self.held and not link.silent and not link.reset:
			time.sleep(0.02)
		if link.silent or link.reset or target is None:
			return  # dropped on the floor
		if self.rate is None:
			target.sendall(data)
		else:
			step = max(1, int(self.rate / 20))
			for start in range(0, len(data), step):
				target.sendall(data[start : start + step])
				time.sleep(0.05)
		if target is link.upstream:
			self.forwarded += len(data)
			if self._armed_bytes and self.forwarded >= self._armed_bytes[0]:
				(_, fault), self._armed_bytes = self._armed_bytes, None
				fault()

	def stop(self) -> None:
		self.listener.shutdown(socket.SHUT_RDWR)
		self.listener.close()
		with self._lock:
			links, self.links = self.links, []
		for link in links:
			link.reset = True
			for sock in (link.client, link.upstream):
				if sock is not None:
					shut(sock)
					sock.close()


def chunks(sock: socket.socket):
	while data := sock.recv(65536):
		yield data


def kafka_requests(sock: socket.socket):
	"""Yields the client's Kafka requests whole (size prefix included), so each can be looked at."""
	stream = sock.makefile("rb")
	while len(size := stream.read(4)) == 4:
		body = stream.read(int.from_bytes(size, "big"))
		if len(body) < 2:
			return
		yield size + body


def reset(sock: socket.socket | None) -> None:
	"""Closes a socket with an RST (linger 0), as a peer that forgot the connection answers."""
	if sock is None:
		return
	try:
		sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
		sock.shutdown(socket.SHUT_RD)  # wakes the thread reading it; the close then sends the RST
		sock.close()
	except OSError:
		pass


def shut(*ends: socket.socket | None) -> None:
	for end in ends:
		if end is None:
			continue
		try:
			end.shutdown(socket.SHUT_RDWR)
		except OSError:
			pass


@pytest.fixture(scope="module", name="kafka_behind_proxy")
def kafka_behind_proxy_fixture():
	"""A Kafka broker that tells its clients to connect through a fault proxy in front of it."""
	port = free_port()
	with KafkaBroker(advertised_port=port) as broker:
		proxy = FaultProxy(port, broker.port, kafka=True).start()
		yield SimpleNamespace(broker=broker, proxy=proxy, url=f"kafka://127.0.0.1:{port}")
		proxy.stop()


@pytest.fixture(name="kafka_link")
def kafka_link_fixture(kafka_behind_proxy):
	"""The proxied broker, with the link healed again after the test."""
	yield kafka_behind_proxy
	proxy = kafka_behind_proxy.proxy
	proxy.answering, proxy.rate, proxy._armed, proxy._armed_bytes = True, None, None, None
	proxy.heal()
