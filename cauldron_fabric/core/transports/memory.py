"""A transport that keeps messages in memory: for tests, demos and the embedded mode.

``memory://name`` returns the same broker for the same name within a process, so a test can
publish through the relay and read what arrived. ``outage`` and ``reject`` inject faults.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cauldron_fabric.core.errors import MessageRejected, TransportUnavailable
from cauldron_fabric.core.ports import ConnectionReport, Delivery, OutboundMessage, Transport


class MemoryTransport(Transport):
	"""Appends messages to per-destination lists; one partition per destination."""

	scheme = "memory"
	_brokers: ClassVar[dict[str, MemoryTransport]] = {}
	_brokers_lock: ClassVar[threading.Lock] = threading.Lock()

	def __init__(self, name: str = "default"):
		self.name = name
		self.topics: dict[str, list[OutboundMessage]] = defaultdict(list)
		self.outage = False
		self.reject: set[str] = set()
		self._lock = threading.Lock()

	@classmethod
	def from_url(cls, url: str, options: dict[str, Any]) -> MemoryTransport:
		"""Returns the process-wide broker named by the URL's host (``memory://name``)."""
		name = urlsplit(url).netloc or "default"
		with cls._brokers_lock:
			if name not in cls._brokers:
				cls._brokers[name] = cls(name)
			return cls._brokers[name]

	def publish(self, messages: Sequence[OutboundMessage], timeout: float) -> list[Delivery]:
		"""Appends every message unless an outage or a rejection is injected."""
		results = []
		with self._lock:
			for message in messages:
				if self.outage:
					error = TransportUnavailable(f"memory broker {self.name!r} is down (injected outage).")
					results.append(Delivery(False, message.destination, error=error))
				elif message.destination in self.reject:
					error = MessageRejected(f"topic {message.destination!r} refuses messages (injected).")
					results.append(Delivery(False, message.destination, error=error))
				else:
					log = self.topics[message.destination]
					log.append(message)
					results.append(Delivery(True, message.destination, partition=0, offset=len(log) - 1))
		return results

	def check(self, timeout: float) -> ConnectionReport:
		"""Reports the topics held, or the injected outage."""
		if self.outage:
			return ConnectionReport(False, f"memory broker {self.name!r} is down (injected outage)")
		return ConnectionReport(True, f"memory broker {self.name!r} with {len(self.topics)} topic(s)")
