"""A consumer's replies to requests: kept with the request's mark, sent after the commit, sent again.

A request's replies are kept on its processed mark in the same transaction as its effect, so a
redelivered request gets them again: a crash between the commit and the replies does not leave
its requester waiting for nothing. Nor does a reply the broker refused or lost the connection
over: the request is left undone and comes back (deferred, or redelivered), and its duplicate
sends the kept replies again, at most ``reply_attempts`` times and only while its requester
waits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cauldron_fabric.core.consumer.handlers import HandlerContext
from cauldron_fabric.core.consumer.messages import InboundMessage
from cauldron_fabric.core.consumer.options import ConsumerOptions
from cauldron_fabric.core.consumer.outcomes import DEFERRED, PROCESSED, UNREPLIED, Outcomes
from cauldron_fabric.core.consumer.ports import MessageSource, TrackingStore
from cauldron_fabric.core.consumer.reply_addresses import ReplyAddressRefused
from cauldron_fabric.core.errors import RetryableError

log = logging.getLogger("cauldron_fabric.consumer")

MAX_REPLY_FAILURES_KEPT = 1000


class Replies:
	"""Keeps, sends and sends again the replies of one consumer's requests."""

	def __init__(
		self,
		source: MessageSource,
		tracking: TrackingStore,
		options: ConsumerOptions,
		outcomes: Outcomes,
		clock: Callable[[], float],
	):
		self.source = source
		self.tracking = tracking
		self.options = options
		self.outcomes = outcomes
		self.clock = clock
		self._failures: dict[str, int] = {}  # request id -> sends of its replies that failed

	def keep(self, context: HandlerContext) -> bool:
		"""Writes the replies to a request onto its mark; tells whether a redelivery will find them."""
		if not (context.replies and context.is_request):
			return False
		size = sum(len(reply.to_json().encode()) for reply in context.replies)
		if size > self.options.max_kept_replies_bytes:
			log.warning(
				"not keeping the replies to %s (%d bytes, over %d): a redelivery will not get them",
				context.envelope.id,
				size,
				self.options.max_kept_replies_bytes,
			)
			return False
		try:
			self.tracking.keep_replies(self.options.group, context.envelope.id, context.replies)
		except RetryableError:
			raise
		except Exception:
			# A store that cannot keep them (a table not migrated yet) still commits the effect:
			# the replies go out now, only a redelivery would miss them, as before they were kept.
			log.exception("could not keep the replies to %s with its mark", context.envelope.id)
			return False
		return True

	def add_kept(self, context: HandlerContext) -> None:
		"""Adds the replies kept with a redelivered request's mark to its context (none if unreadable).

		Raises RetryableError when the tracking store is unavailable.
		"""
		try:
			context.replies.extend(self.tracking.kept_replies(self.options.group, context.envelope.id))
		except RetryableError:
			raise
		except Exception:
			log.exception("could not read the replies kept for request %s", context.envelope.id)

	def send_and_finish(
		self, message: InboundMessage, context: HandlerContext, outcome: str, kept: bool
	) -> str:
		"""Sends the replies, then marks the message done; one that could not go out comes back.

		Marked done, the request would never be seen again and its requester would wait for
		nothing. Left undone, it comes back (deferred here, or redelivered to another member
		when the connection or the partition went) as a duplicate, which sends the replies
		kept on its mark. Replies that were not kept cannot come back, so they are given up at
		once; others after ``reply_attempts`` sends, as a reply address that never takes them
		(a foreign requester's deleted queue) would otherwise hold the request for ever.
		"""
		request = context.envelope.id
		error = self._send(message, context)
		failures = self._failures.pop(request, 0) + 1
		if error is None:
			return self.outcomes.finish(message, outcome)
		if kept and failures < self.options.reply_attempts and not isinstance(error, ReplyAddressRefused):
			return self._later(message, request, failures, outcome, error)
		log.error(
			"gave up replying to request %s (correlation id %s) after %d attempt(s): %s",
			request,
			context.envelope.metadata.correlation_id,
			failures,
			error,
		)
		self.outcomes.stats.count(message.topic, message.partition, UNREPLIED)
		return self.outcomes.finish(message, outcome)

	def _later(
		self, message: InboundMessage, request: str, failures: int, outcome: str, error: Exception
	) -> str:
		"""Leaves a request undone, to send its kept replies when it comes back after a backoff."""
		self._failures[request] = failures
		if len(self._failures) > MAX_REPLY_FAILURES_KEPT:
			# Requests that came back to another member (their partition or connection moved)
			# never clear their count here: the oldest go, so the map stays small.
			del self._failures[next(iter(self._failures))]
		stats = self.outcomes.stats
		if outcome == PROCESSED:
			stats.count(message.topic, message.partition, PROCESSED)  # its effect is committed
		stats.count(message.topic, message.partition, DEFERRED)
		delay = self.options.outage_backoff.delay(failures)
		log.warning("could not reply to request %s, trying again in %.1f s: %s", request, delay, error)
		self.source.defer(message, self.clock() + delay)
		return DEFERRED

	def _send(self, message: InboundMessage, context: HandlerContext) -> Exception | None:
		"""Sends a request's replies unless its requester stopped waiting; returns what refused one."""
		if not context.replies:
			return None
		deadline = context.reply_deadline
		if deadline is not None and deadline < self.clock():
			log.info("not replying to %s: its requester stopped waiting", context.envelope.id)
			return None
		for reply in context.replies:
			try:
				self.source.reply(message, reply)
			except (RetryableError, ReplyAddressRefused) as exc:
				return exc
		return None
