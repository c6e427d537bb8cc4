"""The consumer loop: one handler interface over any source, an exactly-once effect, no lost message.

For each message: read the envelope from any wire form, find its handlers (an event nobody here
handles is skipped), validate it, claim the event in the tracking store, run the handlers in the
same transaction, commit, send the replies to a request, then mark the message done (offset
stored for the next commit, or acked). A crash anywhere before the commit redoes the work; a
crash after it replays a message whose mark makes it change nothing. A request's replies are
kept on its mark in the same transaction, so a redelivered request gets them again: a crash
between the commit and the replies does not leave its requester waiting for nothing. Nor does a
reply the broker refused or lost the connection over: the request is left undone and comes back
(deferred, or redelivered), and its duplicate sends the kept replies again, at most
``reply_attempts`` times and only while its requester waits.

Failures never block the partition: a failing event is copied to a retry topic (or delay queue)
and the partition moves on; after ``max_attempts`` it goes to the dead letters with its origin.
An event that is not even an envelope, or that breaks its schema, goes there at once, as does a
request naming a reply address the source may not write to (before any handler runs). So does
an event during whose handlers the process died ``crash_limit`` times (counted outside the
process by a ``CrashCounter``): otherwise it would kill every restart and block its partition
for ever. An outage of the tracking store or of the broker only defers the message; nothing is
dropped.

A message the broker itself dead-lettered from the group's queue (RabbitMQ) comes back here
too: an expired request is dropped with a count and a log line (its requester stopped waiting;
serving it late is what its TTL prevents), anything else goes to the dead letters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cauldron_fabric.core.cloudevents import from_headers
from cauldron_fabric.core.consumer.handlers import HandlerContext, HandlerTable
from cauldron_fabric.core.consumer.messages import (
	ATTEMPTS_EXHAUSTED,
	BROKER_DEAD_LETTERED,
	EXPIRED_BY_BROKER,
	HANDLER_CRASHED,
	HANDLER_REFUSED,
	INVALID_ENVELOPE,
	REPLY_ADDRESS_REFUSED,
	REPLY_TO,
	SCHEMA_VIOLATION,
	ConsumerStats,
	DeadLetter,
	Failure,
	InboundMessage,
)
from cauldron_fabric.core.consumer.ports import CrashCounter, MessageSource, TrackingStore
from cauldron_fabric.core.consumer.reply_addresses import ReplyAddressRefused
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import (
	FabricError,
	HandlerCrashed,
	InvalidEnvelope,
	PermanentError,
	RetryableError,
)
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.core.sqlsession import is_connection_error

log = logging.getLogger("cauldron_fabric.consumer")

PROCESSED, DUPLICATE, IGNORED = "processed", "duplicates", "ignored"
RETRIED, DEAD_LETTERED, DEFERRED = "retried", "dead_lettered", "deferred"
EXPIRED, UNREPLIED = "expired", "unreplied"
MAX_REPLY_FAILURES_KEPT = 1000
Validator = Callable[[Envelope], Envelope]


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
		self.on_dead_letter = on_dead_letter
		self.after_commit = after_commit
		self.crashes = crashes
		self.clock = clock
		self.stats = ConsumerStats()
		self.outages = 0
		self._reply_failures: dict[str, int] = {}  # request id -> sends of its replies that failed
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
			return self._broker_dead(message)
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
			return self._dead_letter(message, Failure.of(INVALID_ENVELOPE, exc), message.attempt, None)
		handlers = self.handlers.handlers_for(envelope.type)
		if not handlers:
			return self._finish(message, IGNORED)  # another group's business, valid or not
		try:
			# Before the handlers: a request whose reply this consumer would refuse to write
			# (say, into an event topic others consume) must not have its effect either.
			self.source.check_reply_address(message)
		except ReplyAddressRefused as exc:
			log.warning("refused request %s: %s", envelope.id, exc)
			return self._dead_letter(
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
			return self._dead_letter(message, Failure.of(SCHEMA_VIOLATION, error), message.attempt, envelope)
		if isinstance(error, RetryableError) or is_connection_error(error):
			# The schema registry, or the database it lives in, could not be read.
			return self._outage(message, error)
		raise error

	def _broker_dead(self, message: InboundMessage) -> str:
		try:
			envelope = from_headers(message.headers, message.body)
		except Exception:
			envelope = None
		if message.broker_death != EXPIRED_BY_BROKER or message.header(REPLY_TO) is None:
			# Only a request's requester stops waiting: an event that expired (a producer's TTL,
			# a TTL policy on the queue) can still be handled, from its dead letter.
			failure = Failure(
				BROKER_DEAD_LETTERED,
				"",
				f"The broker dead-lettered the message from the group's queue ({message.broker_death}).",
			)
			return self._dead_letter(message, failure, message.attempt, envelope)
		log.warning(
			"dropped request %s (%s, correlation id %s): it expired in the queue of group %s before a"
			" responder took it, and its requester had stopped waiting",
			envelope.id if envelope else message.origin,
			envelope.type if envelope else "not an event",
			envelope.metadata.correlation_id if envelope else None,
			self.options.group,
		)
		return self._finish(message, EXPIRED)

	def _run_handlers(self, message: InboundMessage, envelope: Envelope, handlers) -> str:
		try:
			claimed = self.tracking.claim(self.options.group, envelope, message)
		except RetryableError as exc:
			self.tracking.rollback()
			return self._outage(message, exc)
		except Exception as exc:
			# The database refused this event's processed mark (not an outage): retried, it
			# would fail the same way for ever.
			self.tracking.rollback()
			log.exception("could not record %s as being processed", envelope.id)
			return self._dead_letter(message, Failure.of(INVALID_ENVELOPE, exc), message.attempt, envelope)
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
			outcome = self._dead_letter(
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
			if is_connection_error(exc):
				# The database went away under the handler: an outage, which delays the event
				# without using up its attempts (a long one would dead-letter healthy events).
				return self._outage(message, exc)
			return self._failed(message, envelope, exc)
		try:
			kept = self._keep_replies(context)
			self.tracking.commit()
		except RetryableError as exc:
			self.tracking.rollback()
			return self._outage(message, exc)
		if self.after_commit is not None:
			self.after_commit(message, envelope)
		return self._reply_and_finish(message, context, PROCESSED, kept)

	def _keep_replies(self, context: HandlerContext) -> bool:
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

	def _duplicate(self, message: InboundMessage, envelope: Envelope) -> str:
		"""Finishes an event the group already processed; a request gets its kept replies again.

		Its first run may have died between the commit and the replies: skipped in silence, the
		redelivered request would leave its requester waiting until it times out.
		"""
		context = HandlerContext(envelope, message, self.options.group, self.options.reply_source)
		if context.is_request:
			try:
				context.replies.extend(self.tracking.kept_replies(self.options.group, envelope.id))
			except RetryableError as exc:
				return self._outage(message, exc)
			except Exception:
				log.exception("could not read the replies kept for request %s", envelope.id)
		return self._reply_and_finish(message, context, DUPLICATE, kept=True)

	def _reply_and_finish(
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
		error = self._send_replies(message, context)
		failures = self._reply_failures.pop(request, 0) + 1
		if error is None:
			return self._finish(message, outcome)
		if kept and failures < self.options.reply_attempts and not isinstance(error, ReplyAddressRefused):
			return self._reply_later(message, request, failures, outcome, error)
		log.error(
			"gave up replying to request %s (correlation id %s) after %d attempt(s): %s",
			request,
			context.envelope.metadata.correlation_id,
			failures,
			error,
		)
		self.stats.count(message.topic, message.partition, UNREPLIED)
		return self._finish(message, outcome)

	def _reply_later(
		self, message: InboundMessage, request: str, failures: int, outcome: str, error: Exception
	) -> str:
		"""Leaves a request undone, to send its kept replies when it comes back after a backoff."""
		self._reply_failures[request] = failures
		if len(self._reply_failures) > MAX_REPLY_FAILURES_KEPT:
			# Requests that came back to another member (their partition or connection moved)
			# never clear their count here: the oldest go, so the map stays small.
			del self._reply_failures[next(iter(self._reply_failures))]
		if outcome == PROCESSED:
			self.stats.count(message.topic, message.partition, PROCESSED)  # its effect is committed
		self.stats.count(message.topic, message.partition, DEFERRED)
		delay = self.options.outage_backoff.delay(failures)
		log.warning("could not reply to request %s, trying again in %.1f s: %s", request, delay, error)
		self.source.defer(message, self.clock() + delay)
		return DEFERRED

	def _send_replies(self, message: InboundMessage, context: HandlerContext) -> Exception | None:
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

	def _failed(self, message: InboundMessage, envelope: Envelope, error: Exception) -> str:
		attempt = message.attempt
		self.stats.count(message.topic, message.partition, "failed")
		log.warning("handler failed on %s (attempt %d): %s", envelope.id, attempt, error)
		if isinstance(error, PermanentError):
			return self._dead_letter(message, Failure.of(HANDLER_REFUSED, error), attempt, envelope)
		if attempt >= self.options.max_attempts:
			return self._dead_letter(message, Failure.of(ATTEMPTS_EXHAUSTED, error), attempt, envelope)
		delay = self.options.backoff.delay(attempt)
		failure = Failure.of(ATTEMPTS_EXHAUSTED, error)
		try:
			self.source.retry_later(message, attempt + 1, delay, failure)
		except RetryableError as exc:
			return self._outage(message, exc)
		except PermanentError as exc:
			log.error("the retry topic refused %s (%s); dead-lettering it now", message.origin, exc)
			return self._dead_letter(message, failure, attempt, envelope)
		return self._finish(message, RETRIED)

	def _dead_letter(
		self, message: InboundMessage, failure: Failure, attempts: int, envelope: Envelope | None
	) -> str:
		try:
			destination = self.source.dead_letter(message, failure, attempts)
		except PermanentError as exc:
			# The broker refuses the copy for good (too large for the dead-letter topic): the
			# Dead Letter record below keeps the whole message, and can retry it.
			log.error(
				"the dead-letter destination refused %s (%s); keeping it as a record only",
				message.origin,
				exc,
			)
			destination = None
		except FabricError as exc:
			# An outage keeps the message: dropping it is the one thing never done.
			return self._outage(message, exc)
		letter = DeadLetter(
			self.options.group,
			message.origin,
			attempts,
			failure,
			destination,
			message.body,
			message.key,
			envelope,
			self.source.broker,
		)
		if self.on_dead_letter is not None:
			try:
				self.on_dead_letter(letter)
			except Exception as exc:
				# Without its record the dead letter would be invisible: keep the message and retry.
				log.warning("could not record the dead letter of %s: %s", letter.origin, exc)
				return self._outage(message, exc)
		log.warning("dead-lettered %s to %s: %s", letter.origin, destination, failure.message)
		return self._finish(message, DEAD_LETTERED)

	def _outage(self, message: InboundMessage, error: Exception) -> str:
		self.outages += 1
		self.stats.count(message.topic, message.partition, DEFERRED)
		delay = self.options.outage_backoff.delay(self.outages)
		log.warning("deferring %s by %.1f s: %s", message.origin, delay, error)
		self.source.defer(message, self.clock() + delay)
		return DEFERRED

	def _finish(self, message: InboundMessage, outcome: str) -> str:
		self.source.done(message)
		self.stats.count(message.topic, message.partition, outcome)
		if outcome in (PROCESSED, DUPLICATE):
			self.outages = 0
		return outcome

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
