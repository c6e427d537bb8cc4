"""Kafka as a message source: a confluent-kafka consumer group, offsets committed after the effect.

Several processes with the same group split the partitions (cooperative-sticky rebalancing by
default). Offsets are stored only once a message is done and committed every second, on every
revocation and on close, so a crash replays at most the uncommitted tail, which tracking makes
harmless.

Retries never block a partition: a failed message is copied to ``<group>.retry.<n>`` (attempt
n + 1) with a ``fabric-not-before`` header, and the partition moves on. Each retry topic has one
delay, so its messages fall due in order: when the head is not due yet, that retry partition is
paused and rewound until it is. Dead letters go to ``<group>.dlt`` with the origin headers.
The group's topic names, settings and lag are in ``kafka_group.py``; records are read as
messages in ``kafka_messages.py``, and copies and replies produced in ``kafka_publishing.py``.

Replies go only to the requesters' reply topic (option ``reply_topic``, as the requester takes
it; default ``cauldron.replies``) and to topics the option ``allowed_reply_addresses`` lists
(patterns, ``*`` any characters): a request naming another topic is refused before its handlers
run (see ``reply_addresses.py``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from cauldron_fabric.core.consumer.kafka_group import (
	consumer_config,
	dead_letter_topic,
	member_lag,
	retry_prefix,
	retry_topic,
)
from cauldron_fabric.core.consumer.kafka_messages import inbound_message
from cauldron_fabric.core.consumer.kafka_publishing import produce_reply, publish_copy
from cauldron_fabric.core.consumer.messages import (
	CONSUMER_GROUP,
	DEFAULT_REPLY_TOPIC,
	REPLY_TO,
	Failure,
	InboundMessage,
	PartitionLag,
	forwarded_headers,
)
from cauldron_fabric.core.consumer.ports import MessageSource
from cauldron_fabric.core.consumer.reply_addresses import ReplyAddressPolicy, reply_address_patterns
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.naming import TOPIC_NAME_RULE, invalid_topic_names
from cauldron_fabric.core.transports.kafka import ClientLog, KafkaTransport

log = logging.getLogger("cauldron_fabric.consumer.kafka")


PUBLISH_TIMEOUT = 15.0
# librdkafka's commit and close wait for the group coordinator without a limit: through a
# network partition, a stop (SIGTERM, a rebuild after a settings change) waited until it healed.
CLOSE_TIMEOUT = 10.0
# A pattern is matched against the topics the client knows, which it learns at each metadata
# refresh (librdkafka: every 5 minutes). A pattern consumer asks every 10 seconds instead, so a
# new matching topic is read within that (plus a rebalance); ``metadata_refresh_ms`` changes it.
PATTERN_REFRESH_SECONDS = 10


class KafkaSource(MessageSource):
	"""One member of a consumer group on ``topics`` (or a ``pattern``) plus the group's retry topics."""

	broker = "kafka"

	def __init__(
		self,
		bootstrap: str,
		group: str,
		topics: Sequence[str] = (),
		*,
		pattern: str | None = None,
		retry_tiers: int = 4,
		options: dict[str, Any] | None = None,
	):
		if not topics and not pattern:
			raise ConfigurationError(
				"A consumer needs topics or a pattern to read.",
				hint="Pass --topics T1,T2 or --pattern '^cauldron\\..*'.",
			)
		refused = invalid_topic_names(topics)
		if refused:
			raise ConfigurationError(
				f"{', '.join(map(repr, refused))} is not a Kafka topic name: use {TOPIC_NAME_RULE}.",
				hint="Pass --topics with names such as cauldron.sales_invoice, or --pattern.",
			)
		self.options = dict(options or {})
		self.bootstrap, self.group = bootstrap, group
		self._errors_said: set[int] = set()  # error codes logged since the consumer last received
		self.topics = list(topics)
		self.pattern = ("^" + pattern.lstrip("^")) if pattern else None
		if self.pattern:
			# librdkafka refuses a broken regex with a bare "invalid argument" at subscribe time.
			try:
				re.compile(self.pattern)
			except (re.error, OverflowError, RecursionError) as exc:  # a{99999999999}; ((((…deep
				raise ConfigurationError(
					f"The topic pattern {pattern!r} is not a regular expression ({exc}).",
					hint="Pass a regex such as --pattern '^cauldron\\..*', or --topics T1,T2.",
				) from None
		self.retry_topics = [retry_topic(group, n) for n in range(1, max(0, retry_tiers) + 1)]
		self.dead_letter_topic = dead_letter_topic(group)
		self.reply_addresses = ReplyAddressPolicy(
			"Kafka topic",
			own=(self.options.get("reply_topic") or DEFAULT_REPLY_TOPIC,),
			patterns=reply_address_patterns(self.options.get("allowed_reply_addresses")),
		)
		# Its producer sends replies (someone waits) and the rare retry or dead-letter copy: no linger.
		self.transport = KafkaTransport(bootstrap, {"linger_ms": 0, **self.options})
		self.transport.ensure_topics({*self.topics, *self.retry_topics, self.dead_letter_topic})
		config = consumer_config(bootstrap, group, self._with_pattern_refresh(self.options))
		self.consumer = Consumer(
			{
				**config,
				"error_cb": self._on_error,
				"on_commit": self._on_commit,
				"logger": ClientLog(log),
			}
		)
		# Every retry topic of the group, not only those of the current attempts: after Handler
		# attempts before dead letter is lowered, copies already waiting in the higher ones
		# would never be read again. (Group names only keep [a-zA-Z0-9._-]: '.' is the one
		# character to escape.)
		every_retry = "^" + retry_prefix(group).replace(".", "\\.") + "[0-9]+$"
		subscription = [
			*self.topics,
			*([self.pattern] if self.pattern else []),
			*self.retry_topics,
			every_retry,
		]
		self.consumer.subscribe(
			subscription, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
		)
		self.assigned: set[tuple[str, int]] = set()
		self._paused: dict[tuple[str, int], float] = {}
		self._done: dict[tuple[str, int], int] = {}
		self._dirty = False

	def _with_pattern_refresh(self, options: dict[str, Any]) -> dict[str, Any]:
		"""Returns the options with the metadata refresh a pattern needs (unless they set one)."""
		if not self.pattern:
			return options
		return {
			**options,
			"metadata_refresh_ms": options.get("metadata_refresh_ms") or PATTERN_REFRESH_SECONDS * 1000,
		}

	# -- rebalancing ------------------------------------------------------------------------

	def _on_error(self, error: KafkaError) -> None:
		# A broker that is down is reported at every reconnect, many a second: said once until
		# the consumer receives again (bench fabric consume says itself that it waits for it).
		said = error.code() in self._errors_said
		self._errors_said.add(error.code())
		log.log(logging.DEBUG if said else logging.WARNING, "Kafka consumer error: %s", error)

	def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
		# librdkafka keeps a partition paused through a revocation and a new assignment: one
		# paused for a deferred message, then revoked and assigned again, would never flow
		# again (our own record of the pause went with the revocation). A partition comes to
		# us fresh, from its committed offset.
		if partitions:
			try:
				consumer.resume(partitions)
			except KafkaException as exc:
				log.warning("could not resume newly assigned partitions: %s", exc)
		for p in partitions:
			self._paused.pop((p.topic, p.partition), None)
		self.assigned |= {(p.topic, p.partition) for p in partitions}
		log.info("assigned %s", sorted(self.assigned))

	def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
		self._commit(asynchronous=False)  # hand the partitions over with their progress
		self._forget(partitions)

	def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
		self._forget(partitions)

	def _forget(self, partitions: list[TopicPartition]) -> None:
		for p in partitions:
			key = (p.topic, p.partition)
			self.assigned.discard(key)
			self._paused.pop(key, None)
			self._done.pop(key, None)

	# -- consuming --------------------------------------------------------------------------

	def poll(self, max_messages: int, timeout: float) -> list[InboundMessage]:
		"""Waits up to ``timeout`` for one message, then takes what is already fetched."""
		self._resume_due()
		first = self.consumer.poll(timeout)
		if first is None:
			return []
		raw = [first, *self.consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]
		self._errors_said.clear()
		messages = []
		for m in raw:
			error = m.error()
			if error is not None:
				if error.code() != KafkaError._PARTITION_EOF:
					log.warning("Kafka delivered an error instead of a message: %s", error)
				continue
			if (m.topic(), m.partition()) in self._paused:
				continue
			message = inbound_message(m)
			if self._not_ours(message):
				self.done(message)  # passed over, but done so that the group's lag on it stays 0
				continue
			messages.append(message)
		return messages

	def _not_ours(self, message: InboundMessage) -> bool:
		r"""Tells whether a message is this group's dead letter or another group's retry or dead letter.

		A pattern such as '^cauldron\..*' also matches these topics when groups are named
		'cauldron.billing' and 'cauldron.shipping'. Read back, a dead letter fails the same way
		and is dead-lettered again: by the group itself, or by the other group into a topic the
		first one reads, for ever. Another group's retry copies are its business, not this one's.
		"""
		if message.topic == self.dead_letter_topic:
			return True
		group = message.header(CONSUMER_GROUP)
		if not group or group == self.group:
			return False
		return message.topic == dead_letter_topic(group) or message.topic.startswith(retry_prefix(group))

	def is_current(self, message: InboundMessage) -> bool:
		"""Tells whether the message's partition is still ours and not paused."""
		key = (message.topic, message.partition)
		return key in self.assigned and key not in self._paused

	def done(self, message: InboundMessage) -> None:
		"""Stores the next offset; it is committed within a second or at the next revocation."""
		try:
			self.consumer.store_offsets(
				offsets=[TopicPartition(message.topic, message.partition, message.offset + 1)]
			)
		except KafkaException as exc:
			log.info(
				"offset of %s/%s not stored (partition moved on): %s", message.topic, message.partition, exc
			)
			return
		self._done[(message.topic, message.partition)] = message.offset + 1
		self._dirty = True

	def defer(self, message: InboundMessage, until: float) -> None:
		"""Pauses the message's partition and rewinds it to the message, to resume at ``until``."""
		partition = TopicPartition(message.topic, message.partition, message.offset)
		try:
			self.consumer.pause([partition])
			self.consumer.seek(partition)
		except KafkaException as exc:
			log.info("could not rewind %s/%s (revoked?): %s", message.topic, message.partition, exc)
			return
		self._paused[(message.topic, message.partition)] = until

	def _resume_due(self) -> None:
		now = time.time()
		for key, until in list(self._paused.items()):
			if until <= now:
				self._paused.pop(key)
				try:
					self.consumer.resume([TopicPartition(*key)])
				except KafkaException as exc:
					log.info("could not resume %s: %s", key, exc)

	# -- retries, dead letters, replies ---------------------------------------------------------

	def retry_later(self, message: InboundMessage, attempt: int, delay: float, failure: Failure) -> str:
		"""Copies the message to retry topic ``attempt - 1`` with its not-before time."""
		number = min(max(1, attempt - 1), len(self.retry_topics)) if self.retry_topics else 0
		if not number:
			raise ConfigurationError(f"Consumer group {self.group!r} has no retry topics (max attempts 1).")
		headers = forwarded_headers(message, self.group, attempt, failure, not_before=time.time() + delay)
		return publish_copy(
			self.transport, retry_topic(self.group, number), message, headers, PUBLISH_TIMEOUT
		)

	def dead_letter(self, message: InboundMessage, failure: Failure, attempts: int) -> str:
		"""Copies the message to ``<group>.dlt`` with the origin headers."""
		headers = forwarded_headers(message, self.group, attempts, failure, dead=True)
		return publish_copy(self.transport, self.dead_letter_topic, message, headers, PUBLISH_TIMEOUT)

	def check_reply_address(self, request: InboundMessage) -> None:
		"""Refuses a reply topic that is neither the requesters' nor allowed by the options."""
		self.reply_addresses.check(request.header(REPLY_TO))

	def reply(self, request: InboundMessage, envelope: Envelope) -> None:
		"""Produces the reply to the requester's reply topic and partition, and waits for the ack."""
		topic = request.header(REPLY_TO)
		if not topic:
			return
		self.check_reply_address(request)
		produce_reply(self.transport, topic, request, envelope, PUBLISH_TIMEOUT)

	# -- progress ---------------------------------------------------------------------------

	def commit(self) -> None:
		"""Commits the stored offsets in the background."""
		self._commit(asynchronous=True)

	def _commit(self, asynchronous: bool) -> None:
		# A background commit clears the mark when it starts; ``_on_commit`` sets it again if the
		# commit fails. The synchronous ones, at revocation and close, commit regardless.
		if not (self._dirty if asynchronous else self._done):
			return
		try:
			committed = self.consumer.commit(asynchronous=asynchronous)
			self._dirty = False
		except KafkaException as exc:
			if exc.args[0].code() != KafkaError._NO_OFFSET:
				log.warning("offset commit failed, retried at the next one: %s", exc)
			return
		if not asynchronous:
			# A synchronous commit reports partitions the broker refused in what it returns (it
			# raises only when every partition failed), never through on_commit: marked done,
			# their offsets would not be sent again while no message comes.
			self._on_commit(None, committed or [])

	def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
		"""Marks the offsets to commit again when a commit failed for partitions still assigned.

		Called from poll() with the outcome of each background commit, and with what a
		synchronous one returned. A failed one (the broker refused it
		during a rebalance, the connection broke) is not sent again by the client, and the
		consumer commits only when it has a mark: while no message comes, the group's offset
		would stay behind and a restart would replay what was handled.
		"""
		failed = [
			p
			for p in partitions
			if (error or p.error) is not None and (p.topic, p.partition) in self.assigned
		]
		if failed and (error or failed[0].error).code() != KafkaError._NO_OFFSET:
			self._dirty = True
			log.warning(
				"offset commit of %d partition(s) failed, retried at the next one: %s",
				len(failed),
				error or failed[0].error,
			)

	def lag(self) -> list[PartitionLag]:
		"""Returns per assigned partition the high watermark, the next offset to process and the gap."""
		return member_lag(self.consumer, self.transport.admin, sorted(self.assigned), self._done)

	def idle(self) -> bool:
		"""Tells whether partitions are assigned, none is paused and none has messages left."""
		if not self.assigned or self._paused:
			return False
		return all(entry.lag == 0 for entry in self.lag())

	def close(self) -> None:
		"""Commits what is done, leaves the group (its partitions move at once) and disconnects.

		Gives up after ``CLOSE_TIMEOUT`` when Kafka does not answer, leaving the client to finish
		in the background: the group moves the partitions after the session timeout, and what
		was done and not committed comes again as duplicates.
		"""
		failed: list[BaseException] = []
		closing = threading.Thread(
			target=self._commit_and_leave, args=(failed,), name="kafka-consumer-close", daemon=True
		)
		try:
			closing.start()
			closing.join(CLOSE_TIMEOUT)
			if closing.is_alive():
				log.warning(
					"Kafka did not answer the consumer's closing commit within %g s; stopped without it",
					CLOSE_TIMEOUT,
				)
			elif failed:
				raise failed[0]
		finally:
			self.transport.close()

	def _commit_and_leave(self, failed: list[BaseException]) -> None:
		try:
			self._commit(asynchronous=False)
			self.consumer.close()
		except BaseException as exc:
			failed.append(exc)
