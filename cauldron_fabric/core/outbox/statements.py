"""The Event Log table's shape and the statements written into it by hand.

The table is the event log and the outbox at once: every event is one row, and rows with
status ``Pending`` are the outbox. Ids come from a sequence so they follow commit order for any
one document (a second change to a document waits for the first one's row lock, so it draws a
later id).

Appends are written as literals rather than bound parameters (see build_append and
text_literal): the driver's escaping cost more than the rest of a save's INSERT.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from cauldron_fabric.core.envelope import KEY_LENGTH
from cauldron_fabric.core.errors import InvalidEnvelope
from cauldron_fabric.core.markup import plain
from cauldron_fabric.core.ports import OutboxAppend

PENDING = "Pending"
PUBLISHED = "Published"
RECORDED = "Recorded"
FAILED = "Failed"
INVALID = "Invalid"

DEFAULT_TABLE = "tabEvent Log"
DEFAULT_SEQUENCE = "event_log_id_seq"
ERROR_LENGTH = 2000

# Every column the store writes; the Event Log DocType must define each of them.
EVENT_COLUMNS = (
	"event_id",
	"event_type",
	"source",
	"event_time",
	"data_schema",
	"entity",
	"entity_id",
	"action",
	"correlation_id",
	"causation_id",
	"user_id",
	"tenant_id",
	"partition_key",
	"envelope",
	"status",
	"attempts",
	"last_error",
	"next_attempt_at",
	"published_at",
	"topic",
	"kafka_partition",
	"kafka_offset",
)
STANDARD_COLUMNS = ("name", "creation", "modified", "owner", "modified_by", "docstatus", "idx")
# The envelope's texts an append writes into varchar(140) columns, in order, by their JSON names.
TEXT_LABELS = (
	"id",
	"type",
	"source",
	"time",
	"dataSchema",
	"data.entity",
	"data.entityId",
	"data.action",
	"metadata.correlationId",
	"metadata.causationId",
	"metadata.userId",
	"metadata.tenantId",
)
# The column list of an append, built once: joining it cost about 5 us per save.
APPEND_COLUMNS = ", ".join(f"`{c}`" for c in (*STANDARD_COLUMNS, *EVENT_COLUMNS))

# Composite indexes the relay's queries need; Frappe's DocType JSON only declares single ones.
# Settling changes ``status`` only, so only fabric_status_seq moves; the key index holds
# columns that never change, which keeps each settled row to one index update.
INDEXES = {
	"fabric_status_seq": ("status", "name"),
	"fabric_key_seq": ("partition_key", "name"),
	"fabric_entity": ("entity", "entity_id"),
}


def build_append(
	entries: Sequence[OutboxAppend],
	*,
	actor: str,
	now: dt.datetime,
	table: str = DEFAULT_TABLE,
	sequence: str = DEFAULT_SEQUENCE,
	escapes: bool = True,
) -> tuple[str, list[Any]]:
	"""Returns one multi-row INSERT for ``entries`` and its parameters (none: see below).

	``name`` is drawn from ``sequence``; every other value is written into the statement as a
	literal (see sql_literal): the driver's escaping of some 27 parameters per row cost more
	than building the rest of the statement. ``escapes`` says whether the connection reads a
	backslash as an escape (see backslash_escapes).

	Each row after the first is stamped one microsecond after the one before: Desk lists the
	Event Log by ``creation``, and rows sharing a stamp have no order between them, so paging
	through them showed some twice and others never.
	"""
	author = text_literal(actor, escapes)
	rows: list[str] = []
	for offset, entry in enumerate(entries):
		stamp = sql_literal(now + dt.timedelta(microseconds=offset) if offset else now)
		env = entry.envelope
		data = env.data
		meta = env.metadata
		texts = (
			env.id,
			env.type,
			env.source,
			env.time,
			env.data_schema,
			data.entity,
			data.entity_id,
			data.action,
			meta.correlation_id,
			meta.causation_id,
			meta.user_id,
			meta.tenant_id,
		)
		refuse_too_long(texts)
		values = ", ".join([sql_literal(value, escapes) for value in (*texts, env.partition_key[:280])])
		envelope = text_literal(env.to_json(), escapes)
		# last_error: why an Invalid event is kept; it quotes payload values (see plain)
		problem = sql_literal(plain(entry.problem)[:ERROR_LENGTH] or None, escapes)
		rows.append(
			f"(nextval(`{sequence}`), {stamp}, {stamp}, {author}, {author}, 0, 0, {values}, "
			f"{envelope}, '{entry_status(entry)}', 0, {problem}, NULL, NULL, NULL, 0, 0)"
		)
	return f"INSERT INTO `{table}` ({APPEND_COLUMNS}) VALUES " + ", ".join(rows), []


def refuse_too_long(texts: Sequence[str | None]) -> None:
	"""Raises InvalidEnvelope naming each text (see TEXT_LABELS) longer than its column.

	Envelope.from_dict checks the id and type only, which every table keeps; the Event Log
	keeps the other attributes in columns of the same length, and a longer one (an API
	publisher's source or correlation id) failed the INSERT with a database error.
	"""
	if max(len(text) if text else 0 for text in texts) > KEY_LENGTH:
		raise InvalidEnvelope(
			[
				f"'{label}' is {len(text)} characters long; at most {KEY_LENGTH} are allowed"
				for label, text in zip(TEXT_LABELS, texts, strict=True)
				if text and len(text) > KEY_LENGTH
			]
		)


def sequenced_insert(
	table: str,
	sequence: str,
	columns: Sequence[str],
	envelopes: Sequence[str],
	escapes: bool = True,
) -> str:
	"""Returns a multi-row INSERT of one row per envelope JSON, in ``%s`` paramstyle.

	``name`` (the first column) is drawn from ``sequence``; the ``envelope`` column is written
	into the statement as a literal (see text_literal); every other column is a parameter,
	row after row in column order. The same string given for several rows (one event queued
	for several subscriptions) is escaped once.
	"""
	placeholders = ["%s"] * (len(columns) - 1)
	envelope_at = columns.index("envelope") - 1  # name is nextval(), not a placeholder
	literals: dict[int, str] = {}  # by id(): the strings stay alive in ``envelopes`` meanwhile
	rows: list[str] = []
	for envelope in envelopes:
		literal = literals.get(id(envelope))
		if literal is None:
			literal = literals[id(envelope)] = text_literal(envelope, escapes)
		placeholders[envelope_at] = literal
		rows.append(f"(nextval(`{sequence}`), {', '.join(placeholders)})")
	column_list = ", ".join(f"`{c}`" for c in columns)
	return f"INSERT INTO `{table}` ({column_list}) VALUES " + ", ".join(rows)


# The status bit MariaDB and MySQL set in every reply while the session's sql_mode has
# NO_BACKSLASH_ESCAPES (PyMySQL keeps the last one as ``Connection.server_status``).
NO_BACKSLASH_ESCAPES_STATUS = 512


def backslash_escapes(connection: Any) -> bool:
	"""Tells whether ``connection``'s SQL mode reads a backslash in a literal as an escape.

	It does unless the session's sql_mode has NO_BACKSLASH_ESCAPES; the server reports that
	mode in every reply, so this reads only the driver's last status, no query.
	"""
	return not (getattr(connection, "server_status", 0) & NO_BACKSLASH_ESCAPES_STATUS)


def text_literal(text: str, escapes: bool = True) -> str:
	"""Returns ``text`` as a MariaDB string literal inside a ``%s``-paramstyle statement.

	MariaDB needs only the backslash and the quote escaped in a literal (NUL and every other
	character may stand as they are); under NO_BACKSLASH_ESCAPES a backslash is an ordinary
	character and a quote is doubled instead. ``%`` is doubled for the driver's parameter
	formatting. Three ``str.replace`` calls on a 4 KB envelope cost a few microseconds where
	PyMySQL's per-character escaping costs about 140, on every save.
	"""
	if escapes:
		return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("%", "%%") + "'"
	return "'" + text.replace("'", "''").replace("%", "%%") + "'"


def sql_literal(value: Any, escapes: bool = True) -> str:
	"""Returns a text, an integer, a datetime or None as a MariaDB literal (see text_literal).

	Any other type raises TypeError: nothing reaches a statement unescaped.
	"""
	if isinstance(value, str):
		return text_literal(value, escapes)
	if value is None:
		return "NULL"
	if isinstance(value, int):  # bool too: True is 1
		return str(int(value))
	if isinstance(value, dt.datetime):
		# Its fields, as the driver writes them: an aware datetime keeps its wall-clock time.
		return (
			f"'{value.year:04}-{value.month:02}-{value.day:02} "
			f"{value.hour:02}:{value.minute:02}:{value.second:02}.{value.microsecond:06}'"
		)
	raise TypeError(f"a {type(value).__name__} cannot be written into an outbox statement: pass text")


def entry_status(entry: OutboxAppend) -> str:
	"""Returns the status an appended event starts with."""
	if entry.invalid:
		return INVALID
	return PENDING if entry.pending else RECORDED


def create_table_sql(table: str = DEFAULT_TABLE, sequence: str = DEFAULT_SEQUENCE) -> list[str]:
	"""Returns DDL for a standalone outbox table with the Event Log DocType's shape.

	Frappe creates the real table from the DocType; this exists for the core's own tests and
	for running the relay next to a database without Frappe.
	"""
	return [
		f"CREATE SEQUENCE IF NOT EXISTS `{sequence}` NOCACHE",
		f"""CREATE TABLE IF NOT EXISTS `{table}` (
			name bigint primary key,
			creation datetime(6), modified datetime(6), owner varchar(140), modified_by varchar(140),
			docstatus int not null default 0, idx int not null default 0,
			event_id varchar(140) unique, event_type varchar(140), source varchar(140),
			event_time varchar(140), data_schema varchar(140),
			entity varchar(140), entity_id varchar(140), action varchar(140),
			correlation_id varchar(140), causation_id varchar(140), user_id varchar(140), tenant_id varchar(140),
			partition_key varchar(280), envelope longtext, status varchar(140),
			attempts int not null default 0, last_error text, next_attempt_at datetime(6), published_at datetime(6),
			topic varchar(255), kafka_partition int not null default 0, kafka_offset bigint not null default 0
		) ENGINE=InnoDB CHARACTER SET=utf8mb4 COLLATE=utf8mb4_unicode_ci""",
	]


def index_statements(
	table: str, existing: set[str], indexes: Mapping[str, Sequence[str]] = INDEXES
) -> list[str]:
	"""Returns the CREATE INDEX statements for the ``indexes`` (the relay's) that ``existing`` lacks."""
	return [
		f"CREATE INDEX `{name}` ON `{table}` ({', '.join(f'`{c}`' for c in columns)})"
		for name, columns in indexes.items()
		if name not in existing
	]
