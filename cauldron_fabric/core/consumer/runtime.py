"""The consumer loop: one handler interface over any source, an exactly-once effect, no lost message.

For each message: read the envelope from any wire form, find its handlers (an event nobody here
handles is skipped), validate it, claim the event in the tracking store, run the handlers in the
same transaction, commit, send the replies to a request, then mark the message done (offset
stored for the next commit, or acked). A crash anywhere before the commit redoes the work; a
crash after it replays a message whose mark makes it change nothing. A request's replies are
kept on its mark in the same transaction, and sent again when it comes back (``replies.py``).

A message that cannot be processed is settled without blocking its partition (``outcomes.py``):
copied to a retry, or to the dead letters after ``max_attempts``, or deferred through an outage.
An event that is not even an envelope, or that breaks its schema, goes to the dead letters at
once, as does a request naming a reply address the source may not write to (before any handler
runs). So does an event during whose handlers the process died ``crash_limit`` times (counted
outside the process by a ``CrashCounter``): otherwise it would kill every restart and block its
partition for ever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cauldron_fabric.core.cloudevents import from_headers
from cauldron_fabric.core.consumer.handlers import HandlerContext, HandlerTable
from cauldron_fabric.core.consumer.messages import (
	HANDLER_CRASHED,
	INVALID_ENVELOPE,
	REPLY_ADDRESS_REFUSED,
	SCHEMA_VIOLATION,
	TRACKING_REFUSED,
	ConsumerStats,
	DeadLetter,
	Failure,
	InboundMessage,
)
from cauldron_fabric.core.consumer.options import ConsumerOptions
from cauldron_fabric.core.consumer.outcomes import DEFERRED, DUPLICATE, IGNORED, PROCESSED, Outcomes
from cauldron_fabric.core.consumer.ports import CrashCounter, MessageSource, TrackingStore
from cauldron_fabric.core.consumer.replies import Replies
from cauldron_fabric.core.consumer.reply_addresses import ReplyAddressRefused
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import HandlerCrashed, InvalidEnvelope, PermanentError, RetryableError
from cauldron_fabric.core.sqlsession import is_outage_error, is_transient_error

log = logging.getLogger("cauldron_fabric.consumer")

Validator = Callable[[Envelope], Envelope]


class Consumer:
	"""Runs handlers for the messages of one source; one instance per process (not thread-safe)."""

	def __init__(
		self,
		source: MessageSource,
		handlers: HandlerTable,
		tracking: TrackingStore,
		options: ConsumerOptions,
		*,
		validate: Validator | None = None,
		on_dead_letter: Callable[[DeadLetter], None] | None = None,
		after_commit: Callable[[InboundMessage, Envelope], None] | None = None,
		crashes: CrashCounter | None = None,
		clock: Callable[[], float] = time.time,
	):
		self.source = source
		self.handlers = handlers
		self.tracking = tracking
		self.options = options
		self.validate = validate
		self.after_commit = after_commit
		self.crashes = crashes
		self.clock = clock
		self.stats = ConsumerStats()
		self.outcomes = Outcomes(source, options, self.stats, clock, on_dead_letter)
		self.replies = Replies(source, tracking, options, self.outcomes, clock)
		self._last_commit = time.monotonic()

	# -- the loop ---------------------------------------------------------------------------

	def run(
		self,
		should_stop: Callable[[], bool] = lambda: False,
		max_seconds: float | None = None,
		stop_when_idle: bool = False,
		on_round: Callable[[Consumer], None] | None = None,
	) -> None:
		"""Consumes until ``should_stop()`` (checked between messages), ``max_seconds`` or, with
		``stop_when_idle``, until the source has nothing left. The message in hand is always finished
		and what is done is committed before returning; the source itself stays open."""
		started = time.monotonic()
		while not should_stop():
			if max_seconds is not None and time.monotonic() - started >= max_seconds:
				break
			handled = self.consume_round(should_stop)
			if on_round is not None:
				on_round(self)
			if stop_when_idle and not handled and self.source.idle():
				break
		self.source.commit()

	def consume_round(self, should_stop: Callable[[], bool] = lambda: False) -> int:
		"""Polls once and processes what came; returns how many messages were polled."""
		messages = self.source.poll(self.options.batch_size, self.options.poll_timeout)
		for message in messages:
			if should_stop():
				break  # not done: delivered again to whoever takes the partition over
			if self.source.is_current(message):
				self.process(message)
		if self.crashes is not None:
			# Every round, not only idle ones: a run that returned must not outlive the round as a
			# crash. A member busy with events nobody here handles (or killed after this round)
			# would leave it counted, and the member that takes the event's retry, or a Desk retry
			# of its dead letter, would read one crash too many.
			self.crashes.flush()
		if time.monotonic() - self._last_commit >= self.options.commit_interval:
			self.source.commit()
			self._last_commit = time.monotonic()
		return len(messages)

	# -- one message ------------------------------------------------------------------------

	def process(self, message: InboundMessage) -> str:
		"""Processes one message to a safe outcome and returns which (``processed``, ``retried``…)."""
		if message.broker_death is not None:
			return self.outcomes.broker_dead(message)
		if message.unreadable is not None:
			failure = Failure.of(INVALID_ENVELOPE, InvalidEnvelope([message.unreadable]))
			return self.outcomes.dead_letter(message, failure, message.attempt, None)
		due = self._due(message)
		if due is not None and due > self.clock():
			self.source.defer(message, due)
			return DEFERRED
		try:
			envelope = from_headers(message.headers, message.body)
		except Exception as exc:
			# Whatever this message does to the parser, a crash would meet it again on every
			# restart and block its partition: it is a dead letter.
			if not isinstance(exc, InvalidEnvelope):
				log.exception("could not read %s", message.origin)
			return self.outcomes.dead_letter(
				message, Failure.of(INVALID_ENVELOPE, exc), message.attempt, None
			)
		handlers = self.handlers.handlers_for(envelope.type)
		if not handlers:
			return self.outcomes.finish(message, IGNORED)  # another group's business, valid or not
		try:
			# Before the handlers: a request whose reply this consumer would refuse to write
			# (say, into an event topic others consume) must not have its effect either.
			self.source.check_reply_address(message)
		except ReplyAddressRefused as exc:
			log.warning("refused request %s: %s", envelope.id, exc)
			return self.outcomes.dead_letter(
				message, Failure.of(REPLY_ADDRESS_REFUSED, exc), message.attempt, envelope
			)
		try:
			# The unit of work begins before the schema check: a site's check reads its registry
			# on the same connection, which begin() opens again after it was lost.
			self.tracking.begin()
			if self.validate is not None:
				envelope = self.validate(envelope)
		except Exception as exc:
			self.tracking.rollback()
			return self._not_checked(message, envelope, exc)
		return self._run_handlers(message, envelope, handlers)

	def _due(self, message: InboundMessage) -> float | None:
		"""Returns when a retry copy falls due; one due later than its retry's delay from now, at once.

		The not-before time was written by the member that copied it, by its clock: one running
		an hour ahead would pause the retry partition, and every copy behind it, for that hour.
		No copy waits longer than its delay, so such a time is a clock's error, not a wait; and
		capped at now plus the delay, it would be capped again, later, each time it came back.
		"""
		due = message.not_before
		if due is None:
			return None
		now = self.clock()
		if due > now + self.options.backoff.longest(message.attempt - 1):
			log.warning(
				"%s is due at %s by its copier's clock, ahead of this one: handled now", message.origin, due
			)
			return now
		return due

	def _not_checked(self, message: InboundMessage, envelope: Envelope, error: Exception) -> str:
		"""Sets aside an event that breaks its schema; defers one whose check could not be made."""
		if isinstance(error, PermanentError):
			return self.outcomes.dead_letter(
				message, Failure.of(SCHEMA_VIOLATION, error), message.attempt, envelope
			)
		if isinstance(error, RetryableError) or is_outage_error(error):
			# The schema registry, or the database it lives in, could not be read (for now).
			return self.outcomes.outage(message, error)
		raise error

	def _run_handlers(self, message: InboundMessage, envelope: Envelope, handlers) -> str:
		try:
			claimed = self.tracking.claim(self.options.group, envelope, message)
		except RetryableError as exc:
			self.tracking.rollback()
			return self.outcomes.outage(message, exc)
		except Exception as exc:
			self.tracking.rollback()
			if is_transient_error(exc):
				# A lock wait (another member still holds this event's mark: a redelivery while
				# its first run goes on), a deadlock, a full disk, a read-only failover: it goes
				# by, and the event waits like any outage.
				return self.outcomes.outage(message, exc)
			# The database refused this event's processed mark for good: retried at once, it
			# would fail the same way for ever. A dead letter that Retry can send once it is fixed.
			log.exception("could not record %s as being processed", envelope.id)
			return self.outcomes.dead_letter(
				message, Failure.of(TRACKING_REFUSED, exc), message.attempt, envelope
			)
		if not claimed:
			self.tracking.rollback()
			return self._duplicate(message, envelope)
		if self.crashes is None:
			return self._run_claimed(message, envelope, handlers)
		# Counted only once claimed: a redelivered event this group already processed is a
		# duplicate above, whatever its count says.
		group = self.options.group
		crashed = self.crashes.started(group, envelope.id)
		if crashed >= self.options.crash_limit:
			self.tracking.rollback()
			error = HandlerCrashed(
				f"The consumer process stopped {crashed} times while the handlers of this event ran"
				" (a crash, out of memory or a kill), so the event was set aside to let the others"
				" through.",
				hint="Fix the handler, then retry the dead letter.",
			)
			outcome = self.outcomes.dead_letter(
				message, Failure.of(HANDLER_CRASHED, error), message.attempt, envelope
			)
			if outcome == DEFERRED:
				return outcome  # still counted: set aside once the dead letter can be written
		else:
			outcome = self._run_claimed(message, envelope, handlers)
		self.crashes.finished(group, envelope.id)
		return outcome

	def _run_claimed(self, message: InboundMessage, envelope: Envelope, handlers) -> str:
		context = HandlerContext(
			envelope, message, self.options.group, self.options.reply_source, self.tracking.transaction
		)
		try:
			for handler in handlers:
				handler(envelope, context)
		except Exception as exc:
			self.tracking.rollback()
			if is_outage_error(exc):
				# The database went away under the handler, or refused it for now (a lock wait, a
				# deadlock, a full disk, read-only during a failover): an outage, which delays the
				# event without using up its attempts (a long one would dead-letter healthy events).
				return self.outcomes.outage(message, exc)
			return self.outcomes.failed(message, envelope, exc)
		try:
			kept = self.replies.keep(context)
			self.tracking.commit()
		except RetryableError as exc:
			self.tracking.rollback()
			return self.outcomes.outage(message, exc)
		if self.after_commit is not None:
			self.after_commit(message, envelope)
		return self.replies.send_and_finish(message, context, PROCESSED, kept)

	def _duplicate(self, message: InboundMessage, envelope: Envelope) -> str:
		"""Finishes an event the group already processed; a request gets its kept replies again.

		Its first run may have died between the commit and the replies: skipped in silence, the
		redelivered request would leave its requester waiting until it times out.
		"""
		context = HandlerContext(envelope, message, self.options.group, self.options.reply_source)
		if context.is_request:
			try:
				self.replies.add_kept(context)
			except RetryableError as exc:
				return self.outcomes.outage(message, exc)
		return self.replies.send_and_finish(message, context, DUPLICATE, kept=True)

	def close(self) -> None:
		"""Commits and closes the source, the tracking session and the crash counter."""
		try:
			self.source.close()
		finally:
			try:
				self.tracking.close()
			finally:
				if self.crashes is not None:
					self.crashes.close()
