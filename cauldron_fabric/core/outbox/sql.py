"""The outbox on a MariaDB/MySQL table shaped like a Frappe DocType table (the Event Log).

The table is the event log and the outbox at once: every event is one row, and rows with
status ``Pending`` are the outbox. Ids come from a sequence so they follow commit order for any
one document (a second change to a document waits for the first one's row lock, so it draws a
later id).

Relays claim rows with ``SELECT … FOR UPDATE SKIP LOCKED`` under READ COMMITTED, which takes no
gap locks: a relay publishing a batch never blocks a user's save that appends new events.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from cauldron_fabric.core.envelope import KEY_LENGTH, dumps
from cauldron_fabric.core.errors import InvalidEnvelope
from cauldron_fabric.core.markup import plain
from cauldron_fabric.core.ports import OutboxAppend, OutboxRecord, OutboxStore, Settlement
from cauldron_fabric.core.sqlsession import SqlSession

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

# How long a claim may sit idle before the server rolls it back and frees its rows. A relay
# that froze without dying (SIGSTOP, a paused container or VM, a network partition) keeps its
# connections open, and its batch and every later event of those documents would wait for
# wait_timeout (8 hours by default). A live relay's claim is idle while the broker acknowledges
# (publish timeout, a batch ahead's too) and while it backs off, about two minutes at most
# with the default settings; a claim rolled back under a live relay is published again, never lost.
CLAIM_IDLE_SECONDS = 300

# How many more windows a claim reads past rows it had to leave out (see claim).
MORE_WINDOWS = 4

# What a claim reads, in OutboxRecord's field order.
CLAIM_COLUMNS = ("name", "partition_key", "envelope", "attempts")
# Read beside them: a row with an error to clear once published, though maybe never attempted
# (held back unsent behind an earlier failure of its document).
CARRIES_ERROR = "last_error IS NOT NULL"

# Composite indexes the relay's queries need; Frappe's DocType JSON only declares single ones.
# Settling changes ``status`` only, so only fabric_status_seq moves; the key index holds
# columns that never change, which keeps each settled row to one index update.
INDEXES = {
	"fabric_status_seq": ("status", "name"),
	"fabric_key_seq": ("partition_key", "name"),
	"fabric_entity": ("entity", "entity_id"),
}


def local_now() -> dt.datetime:
	"""Returns the machine's naive local time, the default clock of the store."""
	return dt.datetime.now()


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
	"""
	stamp = sql_literal(now)
	author = text_literal(actor, escapes)
	rows: list[str] = []
	for entry in entries:
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


def excluding(ids: Sequence[int], max_runs: int = 64) -> str:
	"""Returns ``AND`` conditions leaving out the sorted integer ``ids``, written inline.

	Runs of consecutive ids become ``NOT BETWEEN`` ranges, which the range optimizer turns into
	gaps in the index scan; when the ids are too scattered for that, one ``NOT IN`` list.
	Integers only, so writing them into the statement is safe (and cheaper than binding
	thousands of parameters through the driver's escaping).
	"""
	if not ids:
		return ""
	runs: list[list[int]] = []
	for seq in ids:
		if runs and seq == runs[-1][1] + 1:
			runs[-1][1] = seq
		elif not runs or seq != runs[-1][1]:
			runs.append([seq, seq])
	if len(runs) > max_runs:
		return f" AND name NOT IN ({','.join(str(int(seq)) for seq in ids)})"
	return "".join(f" AND name NOT BETWEEN {int(first)} AND {int(end)}" for first, end in runs)


class SqlOutboxStore(OutboxStore):
	"""The outbox on its own DB-API connection (PyMySQL), one open claim at a time."""

	def __init__(
		self,
		connect: Callable[[], Any],
		*,
		table: str = DEFAULT_TABLE,
		sequence: str = DEFAULT_SEQUENCE,
		clock: Callable[[], dt.datetime] = local_now,
		claim_idle_seconds: int = CLAIM_IDLE_SECONDS,
	):
		self.table = table
		self.sequence = sequence
		self.clock = clock
		self._claimed: list[int] = []
		self._retried: set[int] = set()  # claimed rows attempted or held back before
		self.session = SqlSession(
			connect, "outbox", idle_transaction_seconds=claim_idle_seconds, on_drop=self._forget_claim
		)

	@property
	def connection(self):
		"""Returns the open connection (READ COMMITTED, no autocommit)."""
		return self.session.connection

	def _execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
		return self.session.execute(sql, params)[0]

	def _forget_claim(self) -> None:
		self._claimed = []
		self._retried = set()

	def ensure_indexes(self) -> None:
		"""Creates the composite indexes the relay's queries need, if missing."""
		rows = self._execute(f"SHOW INDEX FROM `{self.table}`")
		for statement in index_statements(self.table, {row[2] for row in rows}):
			self._execute(statement)

	def append(self, entries: Sequence[OutboxAppend], actor: str = "Administrator") -> None:
		"""Inserts the events on this store's connection; the caller commits."""
		if entries:
			sql, params = build_append(
				entries,
				actor=actor,
				now=self.clock(),
				table=self.table,
				sequence=self.sequence,
				escapes=backslash_escapes(self.connection),
			)
			self._execute(sql, params)

	def commit(self) -> None:
		"""Commits whatever this store's connection has pending."""
		self.session.commit()

	def claim(self, limit: int, ahead: Collection[int] = ()) -> list[OutboxRecord]:
		"""Locks due Pending rows (skipping rows other relays hold) and keeps per-key order."""
		if self._claimed:
			raise RuntimeError("claim() called twice without settle() or release()")
		self._retried = set()  # a claim that failed partway may have left its marks
		oldest = self._execute(
			f"SELECT name FROM `{self.table}` WHERE status = %s ORDER BY name LIMIT 1", (PENDING,)
		)
		if not oldest:
			self.session.rollback()
			return []
		ahead = set(ahead)
		wanted = int(limit)
		window = self._lock_due(oldest[0][0], wanted, ())
		if not window:
			self.session.rollback()
			return []
		records = self._in_key_order(window, ahead)
		waiting: set[str] = set()
		for _ in range(MORE_WINDOWS):
			# Rows left out for an earlier unpublished row of their key leave room: look past
			# them, without their keys, or one waiting document's backlog would fill every
			# window and starve all the others.
			kept = {r.seq for r in records}
			left_out = [r for r in window if r.seq not in kept]
			if not left_out or len(window) < wanted:
				break  # nothing left out, or no more due rows
			waiting.update(r.partition_key for r in left_out)
			wanted = int(limit) - len(records)
			window = self._lock_due(window[-1].seq + 1, wanted, sorted(waiting))
			if not window:
				break
			records += self._in_key_order(window, ahead | kept)
		if not records:
			self.release()
			return []
		self._claimed = [r.seq for r in records]
		return records

	def _lock_due(self, start: int, limit: int, leave_out: Sequence[str]) -> list[OutboxRecord]:
		"""Locks up to ``limit`` due Pending rows from id ``start`` on, skipping locked rows.

		Rows of the ``leave_out`` keys are not read. Locking goes through the primary key:
		through the status index it would also lock index entries of rows that SKIP LOCKED
		then skips, and the relay holding those rows would wait for them when it settles.
		"""
		keys = f" AND partition_key NOT IN ({', '.join(['%s'] * len(leave_out))})" if leave_out else ""
		rows = self._execute(
			f"""SELECT {", ".join(CLAIM_COLUMNS)}, {CARRIES_ERROR}
			FROM `{self.table}` FORCE INDEX (PRIMARY)
			WHERE name >= %s AND status = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s){keys}
			ORDER BY name LIMIT %s
			FOR UPDATE SKIP LOCKED""",
			(start, PENDING, self.clock(), *leave_out, limit),
		)
		self._retried.update(int(row[0]) for row in rows if row[3] or row[4])
		return [OutboxRecord(*row[:4]) for row in rows]

	def _in_key_order(self, records: list[OutboxRecord], ahead: set[int]) -> list[OutboxRecord]:
		"""Drops records that would overtake an earlier unpublished record of the same key.

		The earlier record is either held by another relay or waiting for its retry time;
		the later one must wait for it, or per-document order breaks. Records ``ahead`` are
		already with the transport, in front of these, so they block nothing.
		"""
		last = max(r.seq for r in records)
		# Fast path: when no Pending row up to the last claimed one lies outside the batch and
		# the rows ahead of it, nothing can be overtaken: the usual case with one relay and no
		# retries. Both are excluded by id (rows ahead may already be settled, and a stale
		# count could hide another relay's earlier row), as runs of consecutive ids so that
		# the index scan skips them instead of reading and discarding thousands of entries.
		mine = sorted({seq for seq in ahead if seq <= last} | {r.seq for r in records})
		(foreign,) = self._execute(
			f"SELECT COUNT(*) FROM `{self.table}` WHERE status = %s AND name <= %s{excluding(mine)}",
			(PENDING, last),
		)[0]
		if not int(foreign):
			return records
		keys = sorted({r.partition_key for r in records})
		placeholders = ", ".join(["%s"] * len(keys))
		earlier = self._execute(
			f"""SELECT name, partition_key FROM `{self.table}`
			WHERE partition_key IN ({placeholders}) AND name <= %s AND status = %s
			ORDER BY name""",
			(*keys, last, PENDING),
		)
		claimed = {r.seq for r in records}
		blocked: set[str] = set()
		for seq, key in earlier:
			seq = int(seq)
			if seq in ahead:
				continue
			if seq not in claimed:
				blocked.add(key)
			elif key in blocked:
				claimed.discard(seq)
		return [r for r in records if r.seq in claimed]

	def settle(self, settlements: Sequence[Settlement]) -> None:
		"""Writes every outcome in at most three statements and commits, releasing the row locks.

		``modified`` is left alone: it would move the row in Frappe's modified index for
		nothing, since ``published_at`` and ``attempts`` already tell when and how often.
		"""
		now = self.clock()
		first_try = [s for s in settlements if s.published and s.seq not in self._retried]
		retried = [s for s in settlements if s.published and s.seq in self._retried]
		failed = [s for s in settlements if not s.published]
		published = (
			"t.status = %s, t.published_at = %s, t.attempts = t.attempts + 1, t.topic = v.topic, "
			"t.kafka_partition = COALESCE(v.part, 0), t.kafka_offset = COALESCE(v.off, 0)"
		)
		if first_try:
			# The common case: a row published on its first attempt has no error or retry time
			# to clear, and a statement joining only numbers and the topic costs MariaDB less
			# than half of one that also carries the failure columns.
			self._update_from_rows(first_try, published, [PUBLISHED, now], with_failure=False)
		if retried:
			self._update_from_rows(
				retried,
				f"{published}, t.last_error = NULL, t.next_attempt_at = NULL",
				[PUBLISHED, now],
				with_failure=False,
			)
		if failed:
			# A row held back unsent has no destination of its own: it keeps the topic it last
			# went to (or none yet).
			self._update_from_rows(
				failed,
				"t.status = IF(v.permanent, %s, t.status), t.attempts = t.attempts + v.attempted, "
				"t.last_error = v.error, t.next_attempt_at = v.retry_at, t.topic = COALESCE(v.topic, t.topic)",
				[FAILED],
				with_failure=True,
			)
		self.session.commit()
		self._forget_claim()

	def _update_from_rows(
		self, settlements: Sequence[Settlement], assignments: str, params: list[Any], with_failure: bool
	) -> None:
		# One JSON parameter joined as a table: a thousand rows cost one short statement
		# instead of thousands of bound parameters (MariaDB 10.6+, MySQL 8).
		rows = [[s.seq, s.destination or None, s.partition, s.offset] for s in settlements]
		columns = "seq BIGINT PATH '$[0]', topic VARCHAR(255) PATH '$[1]', part INT PATH '$[2]', off BIGINT PATH '$[3]'"
		if with_failure:
			for row, s in zip(rows, settlements, strict=True):
				row += [
					plain(s.error)[:ERROR_LENGTH] or None,  # a broker's error: see plain
					1 if s.permanent else 0,
					s.retry_at.isoformat(sep=" ") if s.retry_at else None,
					1 if s.attempted else 0,
				]
			columns += (
				", error TEXT PATH '$[4]', permanent INT PATH '$[5]', retry_at DATETIME(6) PATH '$[6]',"
				" attempted INT PATH '$[7]'"
			)
		self._execute(
			f"""UPDATE JSON_TABLE(%s, '$[*]' COLUMNS({columns})) v
			STRAIGHT_JOIN `{self.table}` t ON t.name = v.seq SET {assignments}""",
			[dumps(rows), *params],
		)

	def release(self) -> None:
		"""Rolls back, giving the claimed rows to the next relay untouched."""
		self._forget_claim()
		self.session.rollback()

	def pending_count(self) -> int:
		"""Counts Pending rows (outside any claim)."""
		rows = self._execute(f"SELECT COUNT(*) FROM `{self.table}` WHERE status = %s", (PENDING,))
		if not self._claimed:
			self.session.rollback()
		return int(rows[0][0])

	def close(self) -> None:
		"""Rolls back anything open and closes the connection."""
		self.release()
		self.session.drop()
