"""A relay's claimed batches, the per-document ordering rules between them, and a cycle's report.

With several store sessions the relay pipelines (see relay_pipeline.Pipeline): while the broker
acknowledges batch N, batch N+1 is claimed on another session and queued behind it in the same
producer. Order holds because batches are produced in claim order on one producer, a key still
in the producer for an earlier batch is produced for a later one only once the earlier batch
has its acknowledgements, and a key that failed is held back in every batch claimed while its
failure was unsettled (later claims see the failed row Pending and skip the key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cauldron_fabric.core.ports import Delivery, OutboundMessage, OutboxRecord, OutboxStore, Settlement


@dataclass(frozen=True, slots=True)
class RelayReport:
	"""What one relay cycle did."""

	claimed: int = 0
	published: int = 0
	retrying: int = 0
	failed: int = 0
	error: str | None = None

	@property
	def stalled(self) -> bool:
		"""Tells whether the cycle published nothing because of a retryable failure.

		That includes a batch claimed and then neither concluded nor settled: its rows are
		Pending again and, without a backoff, would be claimed and published again at once.
		"""
		unsettled = self.error is not None and self.retrying == self.failed == 0
		return self.claimed > 0 and self.published == 0 and (self.retrying > 0 or unsettled)


@dataclass
class Batch:
	"""A claimed batch handed to the transport, waiting for its deliveries."""

	store: OutboxStore
	records: list[OutboxRecord]
	messages: list[tuple[OutboxRecord, OutboundMessage]]
	wait: Callable[[float], list[Delivery]]
	# The batches still unsettled when this one was claimed: it may hold later events of their keys.
	ahead: list[Batch] = field(default_factory=list)
	# Messages of keys that a batch ahead still had in the producer: produced once it concluded.
	deferred: list[tuple[OutboxRecord, OutboundMessage]] = field(default_factory=list)
	# This batch's rows that did not go out (failed, or held back): seq -> (key, the failure).
	unpublished: dict[int, tuple[str, Settlement]] = field(default_factory=dict)
	concluded: bool = False
	# Rows whose envelope yields no message (see Relay._unreadable): failed for good, never sent.
	unreadable: dict[int, Settlement] = field(default_factory=dict)

	@property
	def seqs(self) -> list[int]:
		"""Returns the sequence numbers this batch holds."""
		return [r.seq for r in self.records]


def blocked_keys(ahead: list[Batch], records: list[OutboxRecord]) -> dict[str, tuple[int, Settlement]]:
	"""Returns, per key, the earliest row the concluded batches ahead did not get out, and why.

	A later row of such a key must wait. Rows retried in ``records`` themselves do not block
	them (they go out first, in order); batches settled before the claim do not count (their
	rows are Pending again, and a claim skips the keys they belong to).
	"""
	mine = {record.seq for record in records}
	blocked: dict[str, tuple[int, Settlement]] = {}
	for earlier in ahead:
		for seq, (key, first) in earlier.unpublished.items():
			if seq not in mine and (key not in blocked or seq < blocked[key][0]):
				blocked[key] = (seq, first)
	return blocked


def waits_behind(blocked: dict[str, tuple[int, Settlement]], record: OutboxRecord) -> Settlement | None:
	"""Returns the failure a record must wait behind (see blocked_keys), or None."""
	entry = blocked.get(record.partition_key)
	return entry[1] if entry is not None and record.seq > entry[0] else None


def seqs_of(batches: list[Batch]) -> list[int]:
	"""Returns the sequence numbers the batches hold."""
	return [seq for batch in batches for seq in batch.seqs]
