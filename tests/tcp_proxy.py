"""TCP proxies in front of real brokers that cause real outages: every connection cut, or one request,
or a broker that stops answering."""

import socket
import threading
import time

PRODUCE = 0  # the Kafka protocol's API key of Produce requests
OFFSET_COMMIT = 8  # and of OffsetCommit requests
CREATE_TOPICS = 19  # and of CreateTopics requests


class Proxy:
	"""Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream``; ``stop`` cuts and refuses connections.

	While ``frozen``, nothing is forwarded either way and connections stay open: a broker that
	stopped answering (a long GC pause, a hung node).
	"""

	frozen = False

	def __init__(self, port, upstream):
		self.port, self.upstream, self.sockets, self.listener = port, upstream, [], None

	def start(self):
		self.listener = socket.create_server(("127.0.0.1", self.port))
		threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
		return self

	def _accept(self, listener):
		while True:
			try:
				client, _ = listener.accept()
			except OSError:
				return
			upstream = socket.create_connection(("127.0.0.1", self.upstream))
			self.sockets += [client, upstream]
			threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
			threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

	def _requests(self, client, upstream):
		"""Forwards what the client sends; a subclass may look at it on the way."""
		self._pipe(client, upstream)

	def _pipe(self, source, target):
		try:
			while data := source.recv(65536):
				while self.frozen:
					time.sleep(0.05)
				target.sendall(data)
		except OSError:
			pass
		finally:
			shut(source, target)

	def stop(self):
		self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread so the port is freed
		self.listener.close()
		for sock in self.sockets:
			try:
				sock.shutdown(socket.SHUT_RDWR)
				sock.close()
			except OSError:
				pass
		self.sockets = []


class OffsetCommitCutter(Proxy):
	"""A proxy in front of a Kafka broker that, while ``cutting``, drops each connection an offset
	commit is sent on before the broker sees it; everything else (heartbeats, fetches) flows."""

	cutting = False

	def _requests(self, client, upstream):
		stream = client.makefile("rb")
		try:
			while len(size := stream.read(4)) == 4:
				request = stream.read(int.from_bytes(size, "big"))
				if self.cutting and int.from_bytes(request[:2], "big") == OFFSET_COMMIT:
					break
				upstream.sendall(size + request)
		except OSError:
			pass
		finally:
			shut(client, upstream)


class RequestSwallower(Proxy):
	"""A proxy in front of a Kafka broker that never passes on requests of one API key, nor
	answers them: a broker that takes the request and hangs; everything else flows."""

	def __init__(self, port, upstream, api_key):
		super().__init__(port, upstream)
		self.api_key = api_key

	def _requests(self, client, upstream):
		stream = client.makefile("rb")
		try:
			while len(size := stream.read(4)) == 4:
				request = stream.read(int.from_bytes(size, "big"))
				if int.from_bytes(request[:2], "big") != self.api_key:
					upstream.sendall(size + request)
		except OSError:
			pass
		finally:
			shut(client, upstream)


def shut(*ends):
	"""Shuts both directions of each socket, whatever state it is in."""
	for end in ends:
		try:
			end.shutdown(socket.SHUT_RDWR)
		except OSError:
			pass
