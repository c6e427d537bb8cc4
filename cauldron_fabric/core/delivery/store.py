"""The delivery tracking port: one row per (subscription, event), claimed by delivery workers.

Claiming locks rows until ``settle`` or ``release``, so several workers share the queue and a
delivery is never attempted twice at once: with one row per (subscription, event) and the row
held for the whole attempt, a slow receiver sees at most one request in flight for an event,
and the next only after the retry delay that ``settle`` writes. A worker that dies mid-attempt
loses its locks with its connection; the row is still ``Pending`` and is attempted again.

When a delivery has an ordering key (the subscription keeps per-entity order), claiming hands
out only the oldest pending delivery of that key, and nothing behind an unsettled one; a dead
letter no longer holds its key back, so one poison event cannot stall an entity forever.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping, Sequence

from cauldron_fabric.core.delivery.records import DeliveryAttempt, DeliveryJob, DeliveryRequest, DeliveryRow


class DeliveryStore(abc.ABC):
	"""Queue and log of deliveries; every adapter passes ``tests/test_delivery_store_contract.py``."""

	@abc.abstractmethod
	def enqueue(self, requests: Sequence[DeliveryRequest], actor: str = "Administrator") -> int:
		"""Adds deliveries due now; skips any (subscription, event) already queued; returns how many were new.

		A transactional store adds them in the caller's transaction (with the event itself,
		ideally), which the caller commits.
		"""

	@abc.abstractmethod
	def claim(self, limit: int) -> list[DeliveryJob]:
		"""Locks and returns up to ``limit`` due deliveries, at most one per ordering key."""

	@abc.abstractmethod
	def settle(self, attempts: Sequence[DeliveryAttempt]) -> None:
		"""Records the attempts of claimed deliveries and releases every claimed row (commits)."""

	@abc.abstractmethod
	def reclaim(self, leases: Mapping[int, dt.datetime]) -> list[DeliveryJob]:
		"""Locks again the deliveries a worker settled with a lease (a deferral while its request was
		still under way), each only while it is pending at exactly that lease; returns them as a claim.

		A delivery changed since (discarded; requeued; its lease over and taken by another worker) is
		left alone. ``settle`` or ``release`` ends the claim, as for ``claim``.
		"""

	@abc.abstractmethod
	def release(self) -> None:
		"""Gives the claimed deliveries back untouched (rolls back)."""

	@abc.abstractmethod
	def requeue(self, seqs: Sequence[int], actor: str = "Administrator") -> int:
		"""Makes dead or discarded deliveries pending again, due now, with a fresh attempt count.

		The attempt history is kept. Returns how many deliveries were requeued (commits).
		"""

	@abc.abstractmethod
	def discard(self, seqs: Sequence[int], actor: str = "Administrator") -> int:
		"""Marks pending or dead deliveries as discarded; returns how many changed (commits)."""

	@abc.abstractmethod
	def get(self, seq: int) -> DeliveryRow | None:
		"""Returns one delivery with its attempt history, or None when there is no such row."""

	@abc.abstractmethod
	def status_counts(self) -> dict[str, int]:
		"""Returns how many deliveries are in each status."""

	def close(self) -> None:
		"""Releases the store's connection."""
