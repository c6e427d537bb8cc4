"""How a consumer group processes its messages: attempts, backoffs, batches, commits, replies."""

from __future__ import annotations

from dataclasses import dataclass, field

from cauldron_fabric.core.retry import Backoff


@dataclass(frozen=True)
class ConsumerOptions:
	"""How a consumer group processes: attempts, backoff between them, batching and commits."""

	group: str
	max_attempts: int = 5
	backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, factor=4.0, maximum=300.0, jitter=0.0))
	outage_backoff: Backoff = field(default_factory=lambda: Backoff(base=0.5, factor=2.0, maximum=30.0))
	batch_size: int = 100
	poll_timeout: float = 0.5
	commit_interval: float = 1.0
	source: str = ""
	crash_limit: int = 3  # handler runs the process did not survive before the event is dead
	# Replies to a request larger than this (JSON bytes) are sent but not kept with its mark: a
	# redelivery after a crash before sending them gets none. The site passes its event limit.
	max_kept_replies_bytes: int = 512 * 1024
	# Sends of a request's replies before giving up on them (logged and counted as unreplied);
	# between two, the request waits as in an outage (``outage_backoff``).
	reply_attempts: int = 5

	@property
	def reply_source(self) -> str:
		"""Returns the ``source`` of the replies this consumer sends."""
		return self.source or f"urn:cauldron:consumer:{self.group}"
