"""The Event Log's hot queries on a site whose Event Log holds a million rows.

Fills the site's Event Log with ``--rows`` rows in one INSERT … SELECT from MariaDB's sequence
engine (shaped like the rows the outbox appends: mostly Published, some Recorded, Failed and
Invalid, the newest few hundred Pending, spread over ``--days`` days and 40 DocTypes), then,
for each query the relay, the APIs, the Desk list and the scheduler issue against it, prints
the index MariaDB picks (EXPLAIN's ``key``), whether it sorts (filesort) and the median time.
Last, it runs the retention purge over the rows older than ``--retention`` days and reports
how long it took and its longest single statement (the longest time a save could wait on its
locks). The filled rows are deleted at the end (``--keep`` leaves them).
Target: every hot query reads through an index without sorting the table, in milliseconds;
no purge statement runs longer than about a second.

Run (as the bench user, from the bench's sites folder):
    ../env/bin/python /path/to/tests/benchmarks/bench_event_log_scale.py --site test.localhost
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import frappe
from frappe.utils import add_days, now_datetime

from cauldron_fabric.core.outbox.statements import DEFAULT_SEQUENCE, DEFAULT_TABLE, FAILED, PENDING, PUBLISHED
from cauldron_fabric.services.retention import next_chunk
from cauldron_fabric.services.status import capped_count_sql

TABLE = DEFAULT_TABLE
# Filled rows take names above this, far past anything the site drew before.
BASE = 10_000_000
DOCTYPES = (
	"Sales Invoice", "Sales Order", "Purchase Invoice", "Purchase Order", "Delivery Note", "Purchase Receipt",
	"Stock Entry", "Journal Entry", "Payment Entry", "Customer", "Supplier", "Item", "Item Price", "Quotation",
	"Material Request", "Work Order", "Job Card", "BOM", "Lead", "Opportunity", "Project", "Task", "Timesheet",
	"Employee", "Expense Claim", "Leave Application", "Salary Slip", "Asset", "Serial No", "Batch", "Address",
	"Contact", "ToDo", "Issue", "Warranty Claim", "Pick List", "Packing Slip", "Landed Cost Voucher",
	"Stock Reconciliation", "POS Invoice",
)  # fmt: skip
ACTIONS = ("created", "updated", "updated", "updated", "submitted", "cancelled")


def fill(rows: int, days: int) -> None:
	"""Inserts ``rows`` Event Log rows in one statement and moves the id sequence past them."""
	doctypes = ", ".join(frappe.db.escape(d) for d in DOCTYPES)
	actions = ", ".join(frappe.db.escape(a) for a in ACTIONS)
	step = days * 86400 / rows
	status = f"""CASE WHEN s.seq > {rows} - 500 THEN '{PENDING}'
		WHEN s.seq % 997 = 0 THEN '{FAILED}' WHEN s.seq % 4999 = 0 THEN 'Invalid'
		WHEN s.seq % 10 = 3 THEN 'Recorded' ELSE '{PUBLISHED}' END"""
	frappe.db.sql(
		f"""INSERT INTO `{TABLE}` (name, creation, modified, owner, modified_by, docstatus, idx,
			event_id, event_type, source, event_time, data_schema, entity, entity_id, action,
			correlation_id, causation_id, user_id, tenant_id, partition_key, envelope, status,
			attempts, last_error, next_attempt_at, published_at, topic, kafka_partition, kafka_offset)
		SELECT {BASE} + x.seq, x.at, x.at, 'bench@example.com', 'bench@example.com', 0, 0,
			x.id, CONCAT(x.type_prefix, '.', x.action), 'frappe://bench', DATE_FORMAT(x.at, '%Y-%m-%dT%H:%i:%s.%fZ'),
			CONCAT('urn:cauldron:schema:', x.type_prefix, '.', x.action, ':1'), x.entity, x.entity_id, x.action,
			x.id, NULL, 'bench@example.com', 'bench', CONCAT(x.entity, '/', x.entity_id),
			CONCAT('{{"id":"', x.id, '","type":"', x.type_prefix, '.', x.action,
				'","source":"frappe://bench","specVersion":"1.0","data":{{"entity":"', x.entity,
				'","entityId":"', x.entity_id, '","action":"', x.action, '","payload":{{"doc":{{"name":"',
				x.entity_id, '","status":"Draft","grand_total":', x.seq % 100000,
				',"description":"', REPEAT('lorem ipsum ', 40), '"}}}}}},"metadata":{{"correlationId":"', x.id, '"}}}}'),
			x.status, IF(x.status = '{PENDING}', 0, 1 + (x.status = '{FAILED}') * 4),
			IF(x.status IN ('{FAILED}', 'Invalid'), 'Broker said no', NULL), NULL,
			IF(x.status = '{PUBLISHED}', x.at, NULL), IF(x.status = '{PUBLISHED}', 'erp.events', NULL),
			x.seq % 12, x.seq
		FROM (SELECT s.seq, NOW(6) - INTERVAL ROUND(({rows} - s.seq) * {step}) SECOND AS at, UUID() AS id,
			ELT(1 + s.seq % {len(DOCTYPES)}, {doctypes}) AS entity,
			LOWER(REPLACE(ELT(1 + s.seq % {len(DOCTYPES)}, {doctypes}), ' ', '_')) AS type_prefix,
			ELT(1 + (s.seq DIV 7) % {len(ACTIONS)}, {actions}) AS action,
			CONCAT('DOC-', LPAD((s.seq * 7919) % 50000, 5, '0')) AS entity_id, {status} AS status
			FROM seq_1_to_{rows} s) x"""
	)
	frappe.db.sql(f"SELECT SETVAL(`{DEFAULT_SEQUENCE}`, %s)", (BASE + rows + 1,))
	frappe.db.commit()
	frappe.db.sql(f"ANALYZE TABLE `{TABLE}`")


def cleanup(rows: int) -> None:
	"""Deletes the filled rows, a chunk per statement."""
	for first in range(BASE, BASE + rows + 1, 50_000):
		frappe.db.sql(f"DELETE FROM `{TABLE}` WHERE name > %s AND name <= %s", (first, first + 50_000))
		frappe.db.commit()


def hot_queries(rows: int) -> dict[str, tuple[str, tuple]]:
	"""Returns each hot query (as the app issues it) and its parameters."""
	from cauldron_fabric.core.outbox.sql import CLAIM_COLUMNS

	now = now_datetime()
	mid = BASE + rows // 2
	entity, entity_id = "Sales Invoice", "DOC-00042"
	t = f"`{TABLE}`"
	return {
		"claim: oldest pending": (
			f"SELECT name FROM {t} WHERE status = %s ORDER BY name LIMIT 1",
			(PENDING,),
		),
		"claim: lock due": (
			f"""SELECT {", ".join(CLAIM_COLUMNS)} FROM {t} FORCE INDEX (PRIMARY)
			WHERE name >= %s AND status = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s)
			ORDER BY name LIMIT %s""",
			(BASE + rows - 500, PENDING, now, 500),
		),
		"claim: foreign count": (
			f"SELECT COUNT(*) FROM {t} WHERE status = %s AND name <= %s AND name NOT BETWEEN %s AND %s",
			(PENDING, BASE + rows, BASE + rows - 500, BASE + rows),
		),
		"claim: earlier of keys": (
			f"""SELECT name, partition_key FROM {t} WHERE partition_key IN (%s, %s) AND name <= %s
			AND status = %s ORDER BY name""",
			("Sales Invoice/DOC-00042", "Customer/DOC-00007", BASE + rows, PENDING),
		),
		"pending count": (f"SELECT COUNT(*) FROM {t} WHERE status = %s", (PENDING,)),
		"status: oldest pending": (
			f"SELECT creation FROM {t} WHERE status = %s ORDER BY name LIMIT 1",
			(PENDING,),
		),
		"status: failed": (capped_count_sql(TABLE, "status = %s"), (FAILED,)),
		"requeue: by event ids": (
			f"SELECT name FROM {t} WHERE event_id IN (%s, %s) AND status = %s",
			("x", "y", FAILED),
		),
		"api: page after cursor": (
			f"SELECT name, envelope FROM {t} WHERE name > %s ORDER BY name ASC LIMIT 100",
			(mid,),
		),
		"api: by type prefix": (
			f"SELECT name, envelope FROM {t} WHERE event_type LIKE %s AND name > %s ORDER BY name ASC LIMIT 100",
			("sales\\_invoice.%", mid),
		),
		"api: by entity": (
			f"SELECT name, envelope FROM {t} WHERE entity = %s AND entity_id = %s ORDER BY name ASC LIMIT 100",
			(entity, entity_id),
		),
		"api: by entity id": (
			f"SELECT name, envelope FROM {t} WHERE entity_id = %s ORDER BY name ASC LIMIT 100",
			(entity_id,),
		),
		"api: by status": (
			f"SELECT name, envelope FROM {t} WHERE status = %s AND name > %s ORDER BY name ASC LIMIT 100",
			(FAILED, BASE),
		),
		"api: uncommitted check": (
			f"SELECT COUNT(*), COALESCE(SUM(name), 0) FROM {t} WHERE name > %s AND name <= %s",
			(mid, mid + 100),
		),
		"desk: newest": (f"SELECT name FROM {t} ORDER BY creation DESC LIMIT 20", ()),
		"desk: by type": (
			f"SELECT name FROM {t} WHERE event_type = %s ORDER BY creation DESC LIMIT 20",
			("sales_invoice.updated",),
		),
		"desk: by entity": (
			f"SELECT name FROM {t} WHERE entity = %s ORDER BY creation DESC LIMIT 20",
			(entity,),
		),
		"desk: by entity id": (
			f"SELECT name FROM {t} WHERE entity_id = %s ORDER BY creation DESC LIMIT 20",
			(entity_id,),
		),
		"desk: by status": (
			f"SELECT name FROM {t} WHERE status = %s ORDER BY creation DESC LIMIT 20",
			(FAILED,),
		),
		"desk: count by status": (f"SELECT COUNT(*) FROM {t} WHERE status = %s", (FAILED,)),
		"desk: created in a day": (
			f"SELECT name FROM {t} WHERE creation BETWEEN %s AND %s ORDER BY creation DESC LIMIT 20",
			(add_days(now, -40), add_days(now, -39)),
		),
		"desk: count created in a day": (
			f"SELECT COUNT(*) FROM {t} WHERE creation BETWEEN %s AND %s",
			(add_days(now, -40), add_days(now, -39)),
		),
		"retention: first chunk": next_chunk(
			TABLE, (PUBLISHED, "Recorded"), "creation", add_days(now, -30), None, 5000
		),
		"retention: later chunk": next_chunk(
			TABLE, (PUBLISHED, "Recorded"), "creation", add_days(now, -30), add_days(now, -50), 5000
		),
		# The heartbeat's reads with a backlog (a broker down for a day): Published stands in.
		"status: count of a 900k backlog": (capped_count_sql(TABLE, "status = %s"), (PUBLISHED,)),
		"status: oldest of a 900k backlog": (
			f"SELECT creation FROM {t} WHERE status = %s ORDER BY name LIMIT 1",
			(PUBLISHED,),
		),
		"dead letters: retry matching": (
			"SELECT name FROM `tabDead Letter` WHERE status = %s ORDER BY creation ASC LIMIT 5000",
			("Dead",),
		),
	}


def explain(sql: str, params: tuple) -> tuple[str, int, str]:
	"""Returns the index, the estimated rows and the Extra column of the query's first table
	read (a capped count's inner one)."""
	rows = frappe.db.sql(f"EXPLAIN {sql}", params, as_dict=True)
	row = next((r for r in rows if not r.table.startswith("<derived")), rows[0])
	return row.key or "-", int(row.rows or 0), row.Extra or ""


def timed(sql: str, params: tuple, repeat: int = 5) -> float:
	"""Returns the median seconds the query takes (each run rolled back, none holds locks)."""
	times = []
	for _ in range(repeat):
		started = time.perf_counter()
		frappe.db.sql(sql, params)
		times.append(time.perf_counter() - started)
		frappe.db.rollback()
	return statistics.median(times)


def report_queries(rows: int) -> None:
	print(f"{'query':34} {'key':20} {'est. rows':>10} {'median ms':>10}  extra")
	for label, (sql, params) in hot_queries(rows).items():
		key, estimate, extra = explain(sql, params)
		print(f"{label:34} {key:20} {estimate:>10} {timed(sql, params) * 1000:>10.1f}  {extra}")


def measure_purge(retention_days: int) -> None:
	"""Runs the retention purge and reports its duration and its longest statements."""
	from cauldron_fabric.emit.scheduled import purge_expired_events

	times: dict[str, list[float]] = {}
	sql = frappe.db.sql

	def timed_sql(query, *args, **kwargs):
		started = time.perf_counter()
		try:
			return sql(query, *args, **kwargs)
		finally:
			times.setdefault(str(query).split()[0].upper(), []).append(time.perf_counter() - started)

	previous = frappe.db.get_single_value("Fabric Settings", "retention_days")
	frappe.db.set_single_value("Fabric Settings", "retention_days", retention_days)
	frappe.db.commit()
	frappe.db.sql = timed_sql
	started = time.perf_counter()
	try:
		deleted = purge_expired_events()
	finally:
		frappe.db.sql = sql
		frappe.db.set_single_value("Fabric Settings", "retention_days", previous)
		frappe.db.commit()
	elapsed = time.perf_counter() - started
	print(
		f"purge: {deleted:,} rows older than {retention_days} days in {elapsed:.1f} s ({deleted / elapsed:,.0f} rows/s)"
	)
	for kind in ("SELECT", "DELETE"):
		spent = sorted(times.get(kind, [0.0]))
		print(
			f"  {kind}: {len(spent)} statements, median {statistics.median(spent) * 1000:.0f} ms, "
			f"longest {spent[-1] * 1000:.0f} ms"
		)


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--site", required=True)
	parser.add_argument("--rows", type=int, default=1_000_000)
	parser.add_argument("--days", type=int, default=70)
	parser.add_argument("--retention", type=int, default=35)
	parser.add_argument("--keep", action="store_true", help="leave the filled rows in place")
	parser.add_argument("--no-fill", action="store_true", help="use rows a --keep run left")
	parser.add_argument("--no-purge", action="store_true")
	args = parser.parse_args()
	frappe.init(site=args.site)
	frappe.connect()
	try:
		if not args.no_fill:
			started = time.perf_counter()
			fill(args.rows, args.days)
			print(f"filled {args.rows:,} rows in {time.perf_counter() - started:.0f} s")
		report_queries(args.rows)
		if not args.no_purge:
			measure_purge(args.retention)
	finally:
		if not args.keep:
			cleanup(args.rows)
		frappe.destroy()


if __name__ == "__main__":
	print(dt.datetime.now().isoformat(timespec="seconds"))
	main()
