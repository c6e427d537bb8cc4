"""Consumers' dead letters as Dead Letter documents, and sending them back to their group.

The consumer copies a message it gives up on to the group's dead-letter topic (or queue) with
its origin headers, then files a Dead Letter here; the message is marked done only after both.
Retry sends the event back to the same consumer group only (Kafka: its first retry topic,
RabbitMQ: its queue), due at once and with a fresh round of attempts; other groups that
consumed the event are not bothered again. On RabbitMQ it goes as mandatory whatever the site's
options say: without it a group's queue that was deleted (or never declared) would drop the
event in silence while the letter said Retried.
"""

from __future__ import annotations

import base64
import hashlib
import json
from contextlib import contextmanager

import frappe
from frappe import _

from cauldron_fabric.cauldron_fabric.doctype.dead_letter.dead_letter import LOCK_WAIT, locked_status
from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.consumer.kafka_group import retry_topic
from cauldron_fabric.core.consumer.messages import (
	ATTEMPTS,
	CONSUMER_GROUP,
	INVALID_ENVELOPE,
	ORIGIN_OFFSET,
	ORIGIN_PARTITION,
	ORIGIN_TOPIC,
	DeadLetter,
)
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import (
	BrokerUnreachable,
	ConfigurationError,
	FabricError,
	InvalidEnvelope,
	RetryableError,
)
from cauldron_fabric.core.markup import plain
from cauldron_fabric.core.ports import OutboundMessage
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.core.transports.amqp import MessageUnroutable
from cauldron_fabric.services.errors import log_error_without_values

SOURCE = "Consumer"
OPEN_STATUSES = ("Dead", "Retrying")
BODY_LIMIT = 1_000_000
TEXT_LENGTH = 140  # Data columns
ID_SHOWN = 64  # longer event ids are referred to by their digest, leaving room for the topic
AMQP = "amqp"


def record_dead_letter(letter: DeadLetter) -> None:
	"""Files a Dead Letter for a consumer's dead message (once per origin), in its own transaction.

	The origin's topic is a routing key or a header any producer sets, the entity and its id
	what the producer wrote: they are kept as plain text cut to the columns (Frappe's save
	would rewrite markup, so the lookup by the text as it came never found the letter again,
	and refuse a longer text, so the letter was never filed and the message failed for ever),
	and the exact topic in the attempt log, for Retry.
	"""
	frappe.db.rollback()
	reference = origin_reference(letter)
	candidates = frappe.get_all(
		"Dead Letter",
		filters={
			"source_type": SOURCE,
			"consumer_group": letter.group,
			"reference": reference,
			"status": ("in", OPEN_STATUSES),
		},
		pluck="name",
	)
	if any(still_open(name) for name in candidates):
		frappe.db.rollback()  # releases the lock
		return  # the consumer died after filing it; the redelivered message is the same letter
	envelope = letter.envelope
	frappe.get_doc(
		{
			"doctype": "Dead Letter",
			"source_type": SOURCE,
			"status": "Dead",
			"consumer_group": letter.group,
			"reference": reference,
			"event_id": envelope.id if envelope else None,
			"event_type": envelope.type if envelope else None,
			"entity": shown(envelope.data.entity) if envelope else None,
			"entity_id": shown(envelope.data.entity_id) if envelope else None,
			"attempts": letter.attempts,
			"last_error": plain(letter.failure.message),
			"error_class": letter.failure.error_class,
			"attempt_log": json.dumps(
				{
					"reason": letter.failure.reason,
					"broker": letter.broker,
					"deadLetterDestination": letter.destination,
					"originTopic": letter.origin.topic,
					**stored_key(letter.key),
				},
				indent=1,
			),
			"origin_topic": shown(letter.origin.topic),
			"origin_partition": letter.origin.partition,
			"origin_offset": letter.origin.offset,
			"envelope": envelope.to_json()
			if envelope
			else letter.body[:BODY_LIMIT].decode("utf-8", "replace"),
		}
	).insert(ignore_permissions=True)
	frappe.db.commit()


def still_open(name: str) -> bool:
	"""Tells whether a letter is open as last committed, once a Retry or Discard of it in progress
	(which locks it, see DeadLetter.load_locked) has ended.

	Read without the lock, a letter whose Retry was not committed yet still read Dead: its event,
	sent back and dead again, was taken for the same letter and filed under none. The wait is
	``LOCK_WAIT`` seconds, not InnoDB's 50: a Retry holds its letter while it sends the event, up
	to the publish's 15 s with a slow broker, and the consumer would stand still meanwhile. Past it the message is deferred (an outage) and filed
	when it comes back.
	"""
	try:
		status = locked_status(name)
	except frappe.QueryTimeoutError as exc:
		raise RetryableError(
			f"Dead Letter {name} is being retried or discarded by a request that has not ended within"
			f" {LOCK_WAIT} s.",
			hint="The message is kept and filed once that request ends.",
		) from exc
	return status in OPEN_STATUSES


def shown(text: str) -> str:
	"""Returns a text from outside as a Data column keeps it: plain (see plain), cut to fit."""
	return plain(text)[:TEXT_LENGTH]


def origin_reference(letter: DeadLetter) -> str:
	"""Returns the reference a letter is found by, as plain text: ``topic/partition/offset`` on
	Kafka, ``routing key/event id`` on RabbitMQ; a topic too long for the rest to fit the column
	is cut, and ends in a digest of the whole topic (``~`` and 16 hex digits): cut alone, two
	topics differing only past the cut gave one reference, and a message of the second dying at
	the first's partition and offset was taken for the first's letter, and filed under none.

	A RabbitMQ delivery tag (the origin's offset) counts deliveries on one channel and starts
	again at 1 on the next: it names neither a redelivered message again nor one message alone.
	A message that is no event is named by a digest of its body.
	"""
	origin = letter.origin
	if letter.broker != AMQP:
		place = f"/{origin.partition}/{origin.offset}"
	elif letter.envelope is not None and len(letter.envelope.id) <= ID_SHOWN:
		place = f"/{letter.envelope.id}"
	else:
		place = (
			"/" + hashlib.sha256(letter.envelope.id.encode() if letter.envelope else letter.body).hexdigest()
		)
	topic, room = plain(origin.topic), TEXT_LENGTH - len(place)
	if len(topic) > room:
		digest = "~" + hashlib.sha256(origin.topic.encode()).hexdigest()[:16]
		topic = topic[: room - len(digest)] + digest
	return topic + place


def stored_key(key: bytes | None) -> dict[str, str]:
	"""Returns how the attempt log keeps a message's key: as text, or in base64 when it is not
	UTF-8 (decoded with replacements it would be another key, on another partition)."""
	if not key:
		return {"key": None}
	try:
		return {"key": key.decode("utf-8")}
	except UnicodeDecodeError:
		return {"keyBase64": base64.b64encode(key).decode("ascii")}


def key_of(details: dict, envelope: Envelope) -> str | bytes:
	"""Returns the key a dead letter's event goes back under: its own, else the entity's."""
	if details.get("keyBase64"):
		return base64.b64decode(details["keyBase64"])
	return details.get("key") or envelope.partition_key


def retry(dead_letter) -> None:
	"""Sends the dead letter's event back to its consumer group; raises a clear error if it cannot."""
	details = json.loads(dead_letter.attempt_log or "{}")
	if details.get("reason") == INVALID_ENVELOPE:
		frappe.throw(
			_(
				"This message is not an event ({0}); retrying cannot fix it. Discard it and have its producer send it again."
			).format(dead_letter.last_error),
			title=_("Cannot retry"),
		)
	try:
		envelope = Envelope.from_json(dead_letter.envelope or "")
	except InvalidEnvelope as exc:
		frappe.throw(_("The stored event cannot be read back: {0}").format(exc), title=_("Cannot retry"))
	broker = "rabbitmq" if details.get("broker") == AMQP else "kafka"
	group = dead_letter.consumer_group
	headers = (
		*kafka_headers(envelope),
		(ORIGIN_TOPIC, details.get("originTopic") or dead_letter.origin_topic or ""),
		(ORIGIN_PARTITION, str(dead_letter.origin_partition or 0)),
		(ORIGIN_OFFSET, str(dead_letter.origin_offset or 0)),
		(CONSUMER_GROUP, group),
		(ATTEMPTS, "1"),
	)
	destination = retry_topic(group, 1) if broker == "kafka" else f"/{group}"
	message = OutboundMessage(destination, key_of(details, envelope), envelope.to_json().encode(), headers)
	error = send_back(broker, message)
	if isinstance(error, MessageUnroutable):
		frappe.throw(
			_(
				"RabbitMQ has no queue {0}, so nothing would take the event back: the consumer group's queue was deleted or never declared. Start a consumer of the group (bench --site {1} fabric consume --group {0}), which declares its queue, then retry."
			).format(group, frappe.local.site),
			title=_("Retry failed"),
		)
	if error is not None:
		frappe.throw(
			_(
				"Could not send the event back to consumer group {0}: {1} The broker did not confirm that it took the event, so this letter stays Dead: fix what the broker answered (Fabric Settings, Test connection), then retry. Should the event have gone out all the same (a confirm lost to a timeout), the group skips it as already processed when it comes again."
			).format(group, problem(error)),
			title=_("Retry failed"),
		)


@contextmanager
def shared_connections():
	"""Lets every consumer letter retried inside send over one connection per broker, opened
	with one load of the settings, and closes them at the end.

	Opening, and closing, a connection and loading the settings for each letter took about
	0.1 s a letter on RabbitMQ: a bulk Retry of thousands ran past any request's timeout.
	A broker found unreachable stays so for the rest of the call (see send_back).
	"""
	connections = frappe.local.fabric_retry_connections = {}
	try:
		yield
	finally:
		del frappe.local.fabric_retry_connections
		for kept in connections.values():
			if not isinstance(kept, BrokerUnreachable):
				close_quietly(kept[1])


def send_back(broker: str, message: OutboundMessage) -> Exception | None:
	"""Publishes ``message`` to ``broker``; returns why the broker did not take it, or None.

	Inside shared_connections the broker's connection is kept for the next letter, unless this
	one failed: a connection the broker dropped is not handed on, the next letter opens its own.
	A broker that could not be reached at all (BrokerUnreachable: refused, unanswered, or no
	message taken in time) is not tried again in the same call: the letters after fail at once
	with the same reason. Each new attempt waited for the connection to fail again, up to the
	publish's 15 s: a bulk Retry of 500 letters during an outage took minutes to say so.
	"""
	shared = getattr(frappe.local, "fabric_retry_connections", None)
	kept = shared.pop(broker, None) if shared is not None else None
	if isinstance(kept, BrokerUnreachable):
		shared[broker] = kept
		return kept
	settings, transport = kept or (retry_settings(broker), None)
	try:
		if transport is None:
			options = {**settings.broker_options}
			if broker == "rabbitmq":
				options["mandatory"] = True
			else:
				# Each letter's event is sent alone and waited for: the producer's wait of 5 ms for
				# more messages to batch with it (linger.ms) only delayed every letter.
				options["linger_ms"] = 0
			transport = open_transport(settings.broker_url, options)
		delivery = transport.publish([message], 15.0)[0]
		error = None if delivery.ok else delivery.error
	except FabricError as exc:  # the broker could not be reached at all
		error = exc
	if transport is not None and (shared is None or error is not None):
		close_quietly(transport)
	elif transport is not None:
		shared[broker] = (settings, transport)
	if shared is not None and isinstance(error, BrokerUnreachable):
		shared[broker] = error
	return error


def retry_settings(broker: str):
	"""Returns the consumer settings of ``broker``, or throws what is missing for a Retry."""
	from cauldron_fabric.consume.settings import load_consumer_settings

	try:
		return load_consumer_settings(broker)
	except ConfigurationError as exc:
		# Raised as is, Desk shows it as a Server Error (HTTP 500) with the class name.
		frappe.throw(str(exc), title=_("Cannot retry"))


def close_quietly(transport) -> None:
	"""Closes a transport; a connection already lost has nothing left to close."""
	try:
		transport.close()
	except Exception:
		log_error_without_values("Fabric: closing a Dead Letter Retry's connection")


def problem(error: Exception) -> str:
	"""Returns what went wrong, without a transport's hint: written for the relay ("events wait
	and are retried"), it is untrue of a Retry, which nothing repeats."""
	hint = getattr(error, "hint", None)
	return str(error).removesuffix(f" {hint}") if hint else str(error)
