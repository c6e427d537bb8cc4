"""Planning deliveries in the transaction that records the events."""

from __future__ import annotations

from collections.abc import Sequence

from cauldron_fabric.core.envelope import Envelope


def enqueue_deliveries(envelopes: Sequence[Envelope]) -> None:
	"""Queues one delivery per matching subscription, in the current transaction."""
