"""How a consumer settles a message: done, copied for a retry, dead-lettered, or deferred.

Failures never block the partition: a failing event is copied to a retry topic (or delay queue)
and the partition moves on; after ``max_attempts`` it goes to the dead letters with its origin.
An outage of the tracking store or of the broker only defers the message; nothing is dropped.

A message the broker itself dead-lettered from the group's queue (RabbitMQ) comes back here
too: an expired request is dropped with a count and a log line (its requester stopped waiting;
serving it late is what its TTL prevents), anything else goes to the dead letters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cauldron_fabric.core.cloudevents import from_headers
from cauldron_fabric.core.consumer.messages import (
	ATTEMPTS_EXHAUSTED,
	BROKER_DEAD_LETTERED,
	EXPIRED_BY_BROKER,
	HANDLER_REFUSED,
	REPLY_TO,
	ConsumerStats,
	DeadLetter,
	Failure,
	InboundMessage,
)
from cauldron_fabric.core.consumer.options import ConsumerOptions
from cauldron_fabric.core.consumer.ports import MessageSource
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import FabricError, PermanentError, RetryableError

log = logging.getLogger("cauldron_fabric.consumer")

PROCESSED, DUPLICATE, IGNORED = "processed", "duplicates", "ignored"
RETRIED, DEAD_LETTERED, DEFERRED = "retried", "dead_lettered", "deferred"
EXPIRED, UNREPLIED = "expired", "unreplied"
COPIES_NOTED = 1000  # dead-letter copies whose letters wait to be filed, remembered at most


class Outcomes:
	"""Settles the messages of one consumer and counts each outcome per partition."""

	def __init__(
		self,
		source: MessageSource,
		options: ConsumerOptions,
		stats: ConsumerStats,
		clock: Callable[[], float],
		on_dead_letter: Callable[[DeadLetter], None] | None = None,
	):
		self.source = source
		self.options = options
		self.stats = stats
		self.clock = clock
		self.on_dead_letter = on_dead_letter
		self.outages = 0  # in a row: the next outage waits longer, the next success starts over
		# Messages copied to the dead letters whose letter could not be filed yet -> where the copy went.
		self.copied: dict[tuple, str | None] = {}

	def finish(self, message: InboundMessage, outcome: str) -> str:
		"""Marks the message done and counts ``outcome``."""
		self.source.done(message)
		if self.copied:
			self.copied.pop(_copy_key(message), None)
		self.stats.count(message.topic, message.partition, outcome)
		if outcome in (PROCESSED, DUPLICATE):
			self.outages = 0
		return outcome

	def failed(self, message: InboundMessage, envelope: Envelope, error: Exception) -> str:
		"""Copies an event its handlers failed on to a retry, or to the dead letters once refused or
		out of attempts."""
		attempt = message.attempt
		self.stats.count(message.topic, message.partition, "failed")
		log.warning("handler failed on %s (attempt %d): %s", envelope.id, attempt, error)
		if isinstance(error, PermanentError):
			return self.dead_letter(message, Failure.of(HANDLER_REFUSED, error), attempt, envelope)
		if attempt >= self.options.max_attempts:
			return self.dead_letter(message, Failure.of(ATTEMPTS_EXHAUSTED, error), attempt, envelope)
		delay = self.options.backoff.delay(attempt)
		failure = Failure.of(ATTEMPTS_EXHAUSTED, error)
		try:
			self.source.retry_later(message, attempt + 1, delay, failure)
		except RetryableError as exc:
			return self.outage(message, exc)
		except PermanentError as exc:
			log.error("the retry topic refused %s (%s); dead-lettering it now", message.origin, exc)
			return self.dead_letter(message, failure, attempt, envelope)
		return self.finish(message, RETRIED)

	def dead_letter(
		self, message: InboundMessage, failure: Failure, attempts: int, envelope: Envelope | None
	) -> str:
		"""Copies the message to the dead letters and records it; an outage defers it instead.

		A message whose letter could not be filed (the database down, the letter locked by a Retry)
		comes back, and is not copied again: one message, one copy in the dead letters.
		"""
		key = _copy_key(message)
		if key in self.copied:
			return self.record_dead_letter(message, key, self.copied[key], failure, attempts, envelope)
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
			return self.outage(message, exc)
		return self.record_dead_letter(message, key, destination, failure, attempts, envelope)

	def record_dead_letter(
		self,
		message: InboundMessage,
		key: tuple,
		destination: str | None,
		failure: Failure,
		attempts: int,
		envelope: Envelope | None,
	) -> str:
		"""Files the letter of a message copied to ``destination``; an error defers it, noting the copy."""
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
				if len(self.copied) >= COPIES_NOTED:  # messages never seen again (revoked, reconnected)
					self.copied.pop(next(iter(self.copied)))
				self.copied[key] = destination
				return self.outage(message, exc)
		log.warning("dead-lettered %s to %s: %s", letter.origin, destination, failure.message)
		return self.finish(message, DEAD_LETTERED)

	def broker_dead(self, message: InboundMessage) -> str:
		"""Drops a request the broker expired before a responder took it; dead-letters anything
		else the broker dead-lettered from the group's queue."""
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
			return self.dead_letter(message, failure, message.attempt, envelope)
		log.warning(
			"dropped request %s (%s, correlation id %s): it expired in the queue of group %s before a"
			" responder took it, and its requester had stopped waiting",
			envelope.id if envelope else message.origin,
			envelope.type if envelope else "not an event",
			envelope.metadata.correlation_id if envelope else None,
			self.options.group,
		)
		return self.finish(message, EXPIRED)

	def outage(self, message: InboundMessage, error: Exception) -> str:
		"""Defers the message by the outage backoff, longer with each outage in a row."""
		self.outages += 1
		self.stats.count(message.topic, message.partition, DEFERRED)
		delay = self.options.outage_backoff.delay(self.outages)
		log.warning("deferring %s by %.1f s: %s", message.origin, delay, error)
		self.source.defer(message, self.clock() + delay)
		return DEFERRED


def _copy_key(message: InboundMessage) -> tuple:
	"""Returns what tells a message apart when it comes back: its place, and its body, since a
	RabbitMQ delivery tag starts again at 1 on a new channel."""
	return (message.topic, message.partition, message.offset, message.body)
