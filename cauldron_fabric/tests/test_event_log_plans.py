"""The Event Log's (and the delivery queue's) hot queries read through an index on a site with a few thousand events.

MariaDB picks plans by statistics, so each test fills the Event Log with rows shaped like the
outbox's (spread over 60 days, 40 DocTypes, mostly Published), runs ANALYZE TABLE, and reads
EXPLAIN's ``key``: a query that would scan or sort a table of millions on a busy site shows
here as a missing or wrong key. ``tests/benchmarks/bench_event_log_scale.py`` times the same
queries on a million rows.
"""

from __future__ import annotations

import json
from unittest.mock import patch

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import add_days, now_datetime

from cauldron_fabric.consume.dead_letters import record_dead_letter
from cauldron_fabric.core.consumer.messages import DeadLetter, Failure, Origin
from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.outbox.statements import (
	DEFAULT_SEQUENCE,
	DEFAULT_TABLE,
	PENDING,
	PUBLISHED,
	RECORDED,
	build_append,
)
from cauldron_fabric.core.ports import OutboxAppend
from cauldron_fabric.delivery.dead_letters import record_dead_letters
from cauldron_fabric.delivery.status import delivery_queue_status
from cauldron_fabric.emit.recorder import new_envelope
from cauldron_fabric.services import retention
from cauldron_fabric.services.relay import site_clock, site_db_connector
from cauldron_fabric.services.status import outbox_status

ROWS = 3000
OWNER = "plans@fabric.test"
DOCTYPES = 40


def fill(rows: int = ROWS, days: int = 60) -> None:
	"""Appends ``rows`` events over the last ``days`` days, ids drawn from the outbox's sequence."""
	frappe.db.sql(
		f"""INSERT INTO `{DEFAULT_TABLE}` (name, creation, modified, owner, modified_by, event_id,
			event_type, entity, entity_id, action, partition_key, envelope, status, attempts)
		SELECT nextval(`{DEFAULT_SEQUENCE}`), x.at, x.at, %(owner)s, %(owner)s, UUID(),
			CONCAT('doctype_', x.d, '.updated'), CONCAT('DocType ', x.d), x.id, 'updated',
			CONCAT('DocType ', x.d, '/', x.id), '{{}}', IF(MOD(x.seq, 10) = 3, %(recorded)s, %(published)s), 1
		FROM (SELECT seq, MOD(seq, {DOCTYPES}) AS d, CONCAT("DOC-", MOD(seq * 7919, %(docs)s)) AS id,
			NOW(6) - INTERVAL ROUND((%(rows)s - seq) * %(step)s) SECOND AS at FROM seq_1_to_{int(rows)}) x""",
		{
			"owner": OWNER,
			"recorded": RECORDED,
			"published": PUBLISHED,
			"docs": rows // 10,
			"rows": rows,
			"step": days * 86400 / rows,
		},
	)
	frappe.db.commit()
	frappe.db.sql(f"ANALYZE TABLE `{DEFAULT_TABLE}`")


def remove_filled() -> None:
	frappe.db.delete("Event Log", {"owner": OWNER})
	frappe.db.commit()


def plan(sql: str, params: tuple = ()) -> dict:
	"""Returns EXPLAIN's row for the first table of ``sql`` read (a capped count's inner one)."""
	# Desk queries come with their values written in; binding nothing keeps their ``%`` as is.
	rows = (
		frappe.db.sql(f"EXPLAIN {sql}", params, as_dict=True)
		if params
		else frappe.db.sql(f"EXPLAIN {sql}", as_dict=True)
	)
	return next((row for row in rows if not row.table.startswith("<derived")), rows[0])


def leading_column(key: str | None, table: str = DEFAULT_TABLE) -> str | None:
	"""Returns the first column of the ``table``'s index ``key`` (None when no index is used)."""
	if not key:
		return None
	rows = frappe.db.sql(f"SHOW INDEX FROM `{table}` WHERE Key_name = %s", (key,), as_dict=True)
	return min(rows, key=lambda r: r.Seq_in_index).Column_name


def desk_list(filters: dict) -> str:
	"""Returns the SQL of the Desk list view's page for ``filters``: the DocType's sort, 20 rows."""
	meta = frappe.get_meta("Event Log")
	return frappe.get_list(
		"Event Log",
		filters=filters,
		fields=["name"],
		order_by=f"`tabEvent Log`.`{meta.sort_field}` {meta.sort_order}",
		limit_page_length=20,
		run=0,
	)


class TestEventLogPlans(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		fill()

	@classmethod
	def tearDownClass(cls):
		remove_filled()
		super().tearDownClass()

	def assert_reads_by(self, column: str | tuple[str, ...], sql: str, params: tuple = ()) -> dict:
		"""Asserts that ``sql`` reads the index led by ``column`` (or by one of several)."""
		row = plan(sql, params)
		columns = (column,) if isinstance(column, str) else column
		self.assertIn(leading_column(row.key), columns, f"plan {dict(row)} for {sql}")
		return row

	def test_a_desk_filter_on_the_document_name_alone_reads_its_index(self):
		self.assert_reads_by("entity_id", desk_list({"entity_id": "DOC-42"}))

	def test_a_desk_page_of_one_old_day_reads_the_creation_index_in_list_order(self):
		# Sorted by id, MariaDB walked the ids backwards from the newest until it reached the
		# day (5 s at a million rows), as its ORDER BY … LIMIT estimate assumes a day's events
		# are spread over all ids; sorted by creation, the day is one range of its index.
		self.assertEqual(frappe.get_meta("Event Log").sort_field, "creation")
		now = now_datetime()
		day = desk_list({"creation": ["between", [add_days(now, -40), add_days(now, -39)]]})
		row = self.assert_reads_by("creation", day)
		self.assertNotIn("Using filesort", (row.Extra or "").split("; "), day)

	def test_migrate_puts_back_the_creation_index_the_list_sorts_by(self):
		from cauldron_fabric.install import SITE_INDEXES, ensure_indexes

		frappe.db.sql_ddl(f"DROP INDEX `creation` ON `{DEFAULT_TABLE}`")
		ensure_indexes()  # what after_migrate runs
		index = frappe.db.sql(f"SHOW INDEX FROM `{DEFAULT_TABLE}` WHERE Key_name = 'creation'", as_dict=True)
		self.assertEqual(tuple(row.Column_name for row in index), SITE_INDEXES["creation"])

	def test_a_desk_count_by_creation_time_reads_its_index(self):
		now = now_datetime()
		for window in (("between", [add_days(now, -40), add_days(now, -39)]), (">", add_days(now, -1))):
			count = frappe.get_list(
				"Event Log",
				filters={"creation": window},
				fields=["count(`tabEvent Log`.name) as total_count"],
				order_by=None,
				run=0,
			)
			self.assert_reads_by("creation", count)

	def test_desk_filters_on_type_document_and_status_read_their_indexes(self):
		self.assert_reads_by("event_type", desk_list({"event_type": "doctype_7.updated"}))
		# A document's two columns: its (entity, entity_id) index or the entity_id one both serve.
		self.assert_reads_by(
			("entity", "entity_id"), desk_list({"entity": "DocType 7", "entity_id": "DOC-42"})
		)
		self.assert_reads_by("status", desk_list({"status": "Failed"}))

	def test_the_relay_and_the_status_find_pending_rows_by_the_status_index(self):
		t = f"`{DEFAULT_TABLE}`"
		oldest = self.assert_reads_by(
			"status", f"SELECT name FROM {t} WHERE status = %s ORDER BY name LIMIT 1", (PENDING,)
		)
		self.assertNotIn("filesort", oldest.Extra or "")
		# Either index serves it: MariaDB takes the status one when few rows are pending.
		self.assert_reads_by(
			("partition_key", "status"),
			f"SELECT name, partition_key FROM {t} WHERE partition_key IN (%s, %s) AND name <= %s AND status = %s ORDER BY name",
			("DocType 7/DOC-42", "DocType 8/DOC-43", 10**12, PENDING),
		)

	def test_the_retention_purge_reads_old_rows_by_their_age(self):
		# The daily purge past its first run: a day or two of events behind the cutoff, the
		# chunk before ended a few hours into them.
		now = now_datetime()
		for since in (None, add_days(now, -57)):
			sql, params = retention.next_chunk(
				DEFAULT_TABLE, (PUBLISHED, RECORDED), "creation", add_days(now, -55), since, 100
			)
			row = self.assert_reads_by("creation", sql, params)
			self.assertNotIn("Using filesort", (row.Extra or "").split("; "))


class TestRetentionChunks(FrappeTestCase):
	def test_a_purge_deletes_in_chunks_each_committed_on_its_own(self):
		fill(1000, days=60)
		self.addCleanup(remove_filled)
		cutoff = add_days(now_datetime(), -30)
		old = {"owner": OWNER, "creation": ("<", cutoff)}
		expired = frappe.db.count("Event Log", old)
		kept = frappe.db.count("Event Log", {"owner": OWNER}) - expired
		with patch.object(frappe.db, "commit", wraps=frappe.db.commit) as commit:
			deleted = retention.purge(DEFAULT_TABLE, (PUBLISHED, RECORDED), "creation", cutoff, chunk=50)
		self.assertGreater(expired, 450)
		self.assertEqual(deleted, expired)
		self.assertGreaterEqual(commit.call_count, expired // 50)
		self.assertEqual(frappe.db.count("Event Log", old), 0)
		self.assertEqual(frappe.db.count("Event Log", {"owner": OWNER}), kept)

	def test_a_chunk_being_deleted_holds_up_neither_a_save_nor_a_relay(self):
		fill(200, days=60)
		self.addCleanup(remove_filled)
		sql, params = retention.next_chunk(
			DEFAULT_TABLE, (PUBLISHED, RECORDED), "creation", add_days(now_datetime(), -30), None, 50
		)
		names = [row[0] for row in frappe.db.sql(sql, params)]
		purge = site_db_connector()()
		self.addCleanup(purge.close)
		with purge.cursor() as cursor:  # a chunk deleted, not committed yet
			cursor.execute(
				f"DELETE FROM `{DEFAULT_TABLE}` WHERE name IN ({', '.join(['%s'] * len(names))})", names
			)
		# A save appends its event and a relay claims it, neither waiting (2 s at most) for the purge.
		envelope = new_envelope(
			"fabric_probe.saved", "Fabric Probe", frappe.generate_hash(length=10), "saved", {}
		)
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "Event Log", {"event_id": envelope.id})
		frappe.db.sql("SET SESSION innodb_lock_wait_timeout = 2")
		self.addCleanup(frappe.db.sql, "SET SESSION innodb_lock_wait_timeout = DEFAULT")
		append, values = build_append([OutboxAppend(envelope)], actor=OWNER, now=now_datetime())
		frappe.db.sql(append, values)
		frappe.db.commit()
		store = SqlOutboxStore(site_db_connector(), clock=site_clock())
		self.addCleanup(store.close)
		store.session.execute("SET SESSION innodb_lock_wait_timeout = 2")
		# Past any backlog the site already has (a relay may not be running where the suite runs).
		claimed = store.claim(store.pending_count() + 1000)
		store.release()
		self.assertIn(envelope.id, [json.loads(record.envelope_json)["id"] for record in claimed])


class TestStatusWithABacklog(FrappeTestCase):
	def test_the_outbox_status_of_a_backlog_reads_only_the_status_index(self):
		fill()
		self.addCleanup(remove_filled)
		# A broker down for a while: most events wait, not due yet (so no relay takes them).
		frappe.db.sql(
			f"UPDATE `{DEFAULT_TABLE}` SET status = %s, next_attempt_at = NOW() + INTERVAL 1 DAY WHERE owner = %s",
			(PENDING, OWNER),
		)
		frappe.db.commit()
		frappe.db.sql(f"ANALYZE TABLE `{DEFAULT_TABLE}`")
		with patch.object(frappe.db, "sql", wraps=frappe.db.sql) as sql:
			status = outbox_status()
		self.assertGreaterEqual(status["pending"], ROWS)
		for query, params in (call.args for call in sql.call_args_list):
			row = plan(query, params)
			extra = (row.Extra or "").split("; ")
			if "LIMIT 1" in query:  # reads rows in id order and stops at the first one
				self.assertIn(row.key, ("PRIMARY", "fabric_status_seq"), query)
				self.assertNotIn("Using filesort", extra, query)
			else:  # counts index entries without reading a row
				self.assertEqual(row.key, "fabric_status_seq", query)
				self.assertIn("Using index", extra, query)


class TestDeliveryQueueWithABacklog(FrappeTestCase):
	def test_the_delivery_queue_status_reads_only_the_workers_due_index(self):
		# Mostly delivered, as on a busy site; a receiver down for a while leaves some waiting out
		# a backoff, some due and some dead.
		frappe.db.sql(
			"""INSERT INTO `tabEvent Delivery` (name, creation, modified, owner, modified_by,
				subscription, event_id, event_type, envelope, status, attempts, next_attempt_at)
			SELECT nextval(`event_delivery_id_seq`), NOW(6) - INTERVAL seq MINUTE, NOW(6), %(owner)s,
				%(owner)s, CONCAT('plans-', MOD(seq, 20)), UUID(), 'todo.updated', '{}',
				CASE MOD(seq, 20) WHEN 1 THEN 'Pending' WHEN 2 THEN 'Pending' WHEN 3 THEN 'Dead'
					ELSE 'Delivered' END, 1,
				IF(MOD(seq, 20) = 1, NOW(6) + INTERVAL 1 HOUR, NOW(6) - INTERVAL seq SECOND)
			FROM seq_1_to_20000""",
			{"owner": OWNER},
		)
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "Event Delivery", {"owner": OWNER})
		frappe.db.sql("ANALYZE TABLE `tabEvent Delivery`")
		with patch.object(frappe.db, "sql", wraps=frappe.db.sql) as sql:
			status = delivery_queue_status()
		self.assertGreaterEqual((status["pending"], status["due"], status["dead"]), (2000, 1000, 1000))
		queries = [call.args for call in sql.call_args_list if "`tabEvent Delivery`" in str(call.args[0])]
		self.assertEqual(len(queries), 4, sql.call_args_list)
		for query, params in queries:
			row = plan(query, params)
			extra = (row.Extra or "").split("; ")
			self.assertEqual(row.key, "fabric_delivery_due", query)
			self.assertIn("Using index", extra, query)  # no row read, only index entries
			self.assertNotIn("Using filesort", extra, query)


class TestDeadLetterPlans(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		# A receiver down for a day leaves thousands of letters, most of them settled.
		frappe.db.sql(
			"""INSERT INTO `tabDead Letter` (name, creation, modified, owner, modified_by, source_type,
				status, subscription, reference, event_id, event_type, attempts)
			SELECT CONCAT('plans-', seq), NOW(6) - INTERVAL seq MINUTE, NOW(6), %(owner)s, %(owner)s,
				IF(MOD(seq, 2), 'Delivery', 'Consumer'), IF(MOD(seq, 10) = 0, 'Dead', 'Retried'),
				'plans-subscription', CONCAT('plans-ref-', seq), UUID(), 'doctype_1.updated', 5
			FROM seq_1_to_3000""",
			{"owner": OWNER},
		)
		frappe.db.commit()
		frappe.db.sql("ANALYZE TABLE `tabDead Letter`")

	@classmethod
	def tearDownClass(cls):
		frappe.db.delete("Dead Letter", {"owner": OWNER})
		frappe.db.commit()
		super().tearDownClass()

	def test_filing_a_dead_letter_finds_an_open_one_by_its_reference(self):
		with patch.object(frappe.db, "sql", wraps=frappe.db.sql) as sql:
			record_dead_letters()
			record_dead_letter(
				DeadLetter(
					group=OWNER,
					origin=Origin("plans-topic", 0, 1),
					attempts=1,
					failure=Failure("handler", "ValueError", "no"),
					destination=None,
					body=b"{}",
				)
			)
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "Dead Letter", {"consumer_group": OWNER})
		checks = [
			(call.args[0], call.args[1] if len(call.args) > 1 else ())  # get_all inlines its values
			for call in sql.call_args_list
			if "`tabDead Letter`" in str(call.args[0])
			and str(call.args[0]).lstrip().upper().startswith("SELECT")
		]
		self.assertEqual(len(checks), 2)
		for query, params in checks:
			explained = frappe.db.sql(f"EXPLAIN {query}", params, as_dict=True)
			letters = next(row for row in explained if row.table in ("l", "tabDead Letter"))
			self.assertEqual(leading_column(letters.key, "tabDead Letter"), "reference", query)
