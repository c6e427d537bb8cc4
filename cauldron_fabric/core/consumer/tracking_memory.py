"""Tracking in process memory: the same contract as the MariaDB store, for tests and embedding.

Handlers write through ``store.transaction`` (a list of effects); committing the unit of work
moves them to ``MemoryTracking.effects`` together with the processed mark.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cauldron_fabric.core.consumer.messages import InboundMessage
from cauldron_fabric.core.consumer.ports import TrackingStore
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import RetryableError

LOCK_WAIT_SECONDS = 10.0


class TrackingLockTimeout(RetryableError):
	"""Another session held the same event for longer than the lock wait."""


@dataclass
class MemoryTracking:
	"""The shared marks and effects; each consumer opens its own session on them."""

	processed: set[tuple[str, str]] = field(default_factory=set)
	replies: dict[tuple[str, str], list[Envelope]] = field(default_factory=dict)
	effects: list[Any] = field(default_factory=list)
	holders: dict[tuple[str, str], int] = field(default_factory=dict)
	changed: threading.Condition = field(default_factory=threading.Condition)

	def session(self) -> MemoryTrackingStore:
		"""Returns a new session (one consumer's connection) on this state."""
		return MemoryTrackingStore(self)


class MemoryTrackingStore(TrackingStore):
	"""One session; a claim held by another session blocks like a row lock until it ends."""

	def __init__(self, tracking: MemoryTracking | None = None, lock_wait: float = LOCK_WAIT_SECONDS):
		self.tracking = tracking or MemoryTracking()
		self.lock_wait = lock_wait
		self._effects: list[Any] = []
		self._held: list[tuple[str, str]] = []
		self._replies: dict[tuple[str, str], list[Envelope]] = {}

	@property
	def transaction(self) -> list[Any]:
		"""Returns the list handlers append their effects to."""
		return self._effects

	def begin(self) -> None:
		"""Starts a unit of work, discarding anything left over."""
		self.rollback()

	def claim(self, group: str, envelope: Envelope, message: InboundMessage | None = None) -> bool:
		"""Holds the mark for this session; waits while another session holds it."""
		key = (group, envelope.id)
		with self.tracking.changed:
			held = self.tracking.changed.wait_for(
				lambda: self.tracking.holders.get(key) in (None, id(self)), self.lock_wait
			)
			if not held:
				raise TrackingLockTimeout(
					f"Event {envelope.id} is held by another consumer of group {group!r} for over {self.lock_wait:g} s."
				)
			if key in self.tracking.processed:
				return False
			self.tracking.holders[key] = id(self)
			self._held.append(key)
			return True

	def keep_replies(self, group: str, event_id: str, replies: Sequence[Envelope]) -> None:
		"""Stages the replies with the held mark."""
		self._replies[(group, event_id)] = list(replies)

	def kept_replies(self, group: str, event_id: str) -> list[Envelope]:
		"""Returns the committed replies of the event."""
		with self.tracking.changed:
			return list(self.tracking.replies.get((group, event_id), ()))

	def commit(self) -> None:
		"""Publishes the held marks, their replies and the staged effects together."""
		with self.tracking.changed:
			for key in self._held:
				self.tracking.processed.add(key)
				self.tracking.holders.pop(key, None)
				if key in self._replies:
					self.tracking.replies[key] = self._replies[key]
			self.tracking.effects.extend(self._effects)
			self._held, self._effects, self._replies = [], [], {}
			self.tracking.changed.notify_all()

	def rollback(self) -> None:
		"""Drops the held marks, their replies and the staged effects."""
		with self.tracking.changed:
			for key in self._held:
				self.tracking.holders.pop(key, None)
			self._held, self._effects, self._replies = [], [], {}
			self.tracking.changed.notify_all()

	def is_processed(self, group: str, event_id: str) -> bool:
		"""Tells whether a committed mark exists."""
		with self.tracking.changed:
			return (group, event_id) in self.tracking.processed
