"""Tracking on a MariaDB/MySQL table shaped like the Processed Event DocType.

The mark is an INSERT under a unique key (consumer group, event id), written before the
handler runs and committed with the handler's writes on the same connection (READ COMMITTED).
A second session inserting the same key waits on the first one's row lock, then gets a
duplicate-key error once the first commits: the event is skipped, its effect stays single.
The replies to a request are written onto its mark (``replies``, a JSON list of envelopes)
before the commit, so the redelivered request of a process that died before replying gets them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

from cauldron_fabric.core.consumer.messages import InboundMessage
from cauldron_fabric.core.consumer.ports import TrackingStore
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import RetryableError
from cauldron_fabric.core.markup import plain
from cauldron_fabric.core.sqlsession import SqlSession, error_code

DEFAULT_TABLE = "tabProcessed Event"
DEFAULT_SEQUENCE = "processed_event_id_seq"
UNIQUE_KEY = "unique_consumer_group_event_id"
TRACKING_COLUMNS = (
	"consumer_group",
	"event_id",
	"event_type",
	"origin_topic",
	"origin_partition",
	"origin_offset",
)
DUPLICATE_KEY = 1062
# 1205 lock wait timeout, 1213 deadlock: another session held the same event; try again later.
CONTENTION = {1205, 1213}
REPLIES_COLUMN = "replies"


class TrackingUnavailable(RetryableError):
	"""The tracking database could not be reached or was busy; the event is tried again later."""


def insert_mark_sql(table: str = DEFAULT_TABLE, sequence: str = DEFAULT_SEQUENCE) -> str:
	"""Returns the INSERT of one mark (standard DocType columns included), ``%s`` paramstyle."""
	columns = ("name", "creation", "modified", "owner", "modified_by", "docstatus", "idx", *TRACKING_COLUMNS)
	values = ", ".join(["%s"] * (len(columns) - 1))
	return f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in columns)}) VALUES (nextval(`{sequence}`), {values})"


def keep_replies_sql(table: str = DEFAULT_TABLE) -> str:
	"""Returns the UPDATE that puts replies (JSON) onto a group's mark of an event."""
	return f"UPDATE `{table}` SET `{REPLIES_COLUMN}` = %s WHERE consumer_group = %s AND event_id = %s"


def kept_replies_sql(table: str = DEFAULT_TABLE) -> str:
	"""Returns the SELECT of the replies kept on a group's mark of an event."""
	return f"SELECT `{REPLIES_COLUMN}` FROM `{table}` WHERE consumer_group = %s AND event_id = %s"


def replies_json(replies: Sequence[Envelope]) -> str:
	"""Returns replies as the JSON text kept on the mark."""
	return json.dumps([reply.to_dict() for reply in replies], ensure_ascii=False)


def replies_from_json(text: str | bytes | None) -> list[Envelope]:
	"""Returns the replies kept on a mark; none for a mark written without them."""
	return [Envelope.from_dict(reply) for reply in json.loads(text)] if text else []


def already_marked(exc: BaseException, group: str, envelope: Envelope) -> bool:
	"""Tells whether a failed mark INSERT means the group already processed the event.

	Raises TrackingUnavailable when another member of the group holds the event right now
	(lock wait or deadlock); any other error is the caller's to handle.
	"""
	code = error_code(exc)
	if code in CONTENTION:
		raise TrackingUnavailable(
			f"Event {envelope.id} is being processed by another member of group {group!r} ({exc})."
		) from exc
	return code == DUPLICATE_KEY


def mark_values(
	group: str, envelope: Envelope, message: InboundMessage | None, actor: str, now: dt.datetime
) -> list[Any]:
	"""Returns the parameters of ``insert_mark_sql`` for one event."""
	origin = message.origin if message is not None else None
	return [
		now,
		now,
		actor,
		actor,
		0,
		0,
		group,
		envelope.id,
		envelope.type,
		# A routing key, or an origin header any producer may set, shown in Desk: see plain
		plain(origin.topic)[:140] if origin else None,
		origin.partition if origin else 0,
		origin.offset if origin else 0,
	]


def create_table_sql(table: str = DEFAULT_TABLE, sequence: str = DEFAULT_SEQUENCE) -> list[str]:
	"""Returns DDL for a standalone tracking table with the Processed Event DocType's shape.

	Frappe creates the real table from the DocType; this is for the core's tests and for
	consumers running next to a database without Frappe.
	"""
	return [
		f"CREATE SEQUENCE IF NOT EXISTS `{sequence}` NOCACHE",
		f"""CREATE TABLE IF NOT EXISTS `{table}` (
			name bigint primary key,
			creation datetime(6), modified datetime(6), owner varchar(140), modified_by varchar(140),
			docstatus int not null default 0, idx int not null default 0,
			consumer_group varchar(140), event_id varchar(140), event_type varchar(140),
			origin_topic varchar(140), origin_partition int not null default 0, origin_offset bigint not null default 0,
			`{REPLIES_COLUMN}` longtext,
			UNIQUE KEY `{UNIQUE_KEY}` (consumer_group, event_id)
		) ENGINE=InnoDB CHARACTER SET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
		# A table created before replies were kept gets the column; its marks keep none.
		f"ALTER TABLE `{table}` ADD COLUMN IF NOT EXISTS `{REPLIES_COLUMN}` longtext",
	]


class SqlTrackingStore(TrackingStore):
	"""Tracking on its own DB-API connection (PyMySQL); handlers write through ``transaction``."""

	def __init__(
		self,
		connect: Callable[[], Any],
		*,
		table: str = DEFAULT_TABLE,
		sequence: str = DEFAULT_SEQUENCE,
		actor: str = "Administrator",
		lock_wait_seconds: int = 10,
		clock: Callable[[], dt.datetime] = dt.datetime.now,
	):
		self.table, self.sequence, self.actor = table, sequence, actor
		self.clock = clock
		self._insert = insert_mark_sql(table, sequence)
		self._keep_replies, self._kept_replies = keep_replies_sql(table), kept_replies_sql(table)
		self.session = SqlSession(
			connect, "tracking", unavailable=TrackingUnavailable, lock_wait_seconds=lock_wait_seconds
		)

	@property
	def transaction(self) -> Any:
		"""Returns the connection handlers write through (same transaction as the mark)."""
		return self.session.connection

	def begin(self) -> None:
		"""Starts from a clean transaction."""
		self.rollback()

	def claim(self, group: str, envelope: Envelope, message: InboundMessage | None = None) -> bool:
		"""Inserts the mark; False when the group already has one (nothing is written then)."""
		try:
			with self.transaction.cursor() as cur:
				cur.execute(self._insert, mark_values(group, envelope, message, self.actor, self.clock()))
			return True
		except TrackingUnavailable:
			raise
		except Exception as exc:
			if already_marked(exc, group, envelope):
				return False
			self.session.raise_if_lost(exc)
			raise

	def keep_replies(self, group: str, event_id: str, replies: Sequence[Envelope]) -> None:
		"""Writes the replies onto the mark claimed in this transaction."""
		self.session.execute(self._keep_replies, (replies_json(replies), group, event_id))

	def kept_replies(self, group: str, event_id: str) -> list[Envelope]:
		"""Reads the replies committed with the mark, in a fresh read."""
		try:
			rows, _ = self.session.execute(self._kept_replies, (group, event_id))
		finally:
			self.rollback()
		return replies_from_json(rows[0][0]) if rows else []

	def commit(self) -> None:
		"""Commits the handler's writes and the mark."""
		try:
			self.transaction.commit()
		except TrackingUnavailable:
			raise
		except Exception as exc:
			self.session.drop()
			raise TrackingUnavailable(f"Could not commit the event's effect: {exc}.") from exc

	def rollback(self) -> None:
		"""Rolls back; a broken connection is dropped and reopened on next use."""
		self.session.rollback()

	def is_processed(self, group: str, event_id: str) -> bool:
		"""Looks the mark up in a fresh read."""
		with self.transaction.cursor() as cur:
			cur.execute(
				f"SELECT 1 FROM `{self.table}` WHERE consumer_group = %s AND event_id = %s", (group, event_id)
			)
			found = cur.fetchone() is not None
		self.rollback()
		return found

	def close(self) -> None:
		"""Rolls back anything open and closes the connection."""
		self.rollback()
		self.session.drop()
