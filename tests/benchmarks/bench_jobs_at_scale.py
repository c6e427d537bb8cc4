"""The scheduler's retention purges on large tables: their plans, their time, the saves beside them.

Fills the Event Log (``--events`` rows, the shape bench_event_log_scale.py fills), Event Delivery
(``--deliveries``), Dead Letter (``--letters``) and Processed Event (``--marks``) with one
INSERT … SELECT each from MariaDB's sequence engine, spread over ``--days`` days, then for each
daily purge job:

* prints EXPLAIN's index for its chunk query (the age column's index, no filesort, is the target);
* measures the latency of document saves (a ToDo inserted and committed, which appends an Event
  Log row) in a second process, first alone (the baseline) and then while the purge runs: the
  ratio of the p50, p99 and longest save with the purge to the baseline is what to compare;
* reports the purge's rows, seconds and its longest DELETE;
* checks that no row retention keeps (Pending, Failed, Invalid events; Pending and Dead
  deliveries; open letters) was deleted.

Last, it runs the Event Delivery purge in two processes at once (two scheduler workers) and
checks that both end without an error and delete each row once. The filled rows are deleted
at the end (``--keep`` leaves them).

Run (as the bench user, from the bench's sites folder):
    ../env/bin/python /path/to/tests/benchmarks/bench_jobs_at_scale.py --site test.localhost
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import frappe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_event_log_scale as event_log_scale

BASE = event_log_scale.BASE
SUBSCRIPTION = "bench-jobs-sub"
GROUP = "bench-jobs-group"
LETTER = "bench-jobs-dl-"
SAVER_MARK = "bench-jobs-save"
ENVELOPE = """CONCAT('{"id":"', x.id, '","type":"sales_invoice.updated","source":"frappe://bench","data":
	{"entity":"Sales Invoice","entityId":"DOC-1","payload":{"d":"', REPEAT('lorem ipsum ', 40), '"}}}')"""
JOBS = {
	"event log": ("cauldron_fabric.emit.scheduled.purge_expired_events", "tabEvent Log"),
	"deliveries": ("cauldron_fabric.delivery.jobs.purge_settled_deliveries", "tabEvent Delivery"),
	"dead letters": ("cauldron_fabric.delivery.jobs.purge_resolved_dead_letters", "tabDead Letter"),
	"processed marks": ("cauldron_fabric.consume.tracking.purge_processed_events", "tabProcessed Event"),
}
# What each purge must keep, whatever its age.
KEPT = {
	"tabEvent Log": "status IN ('Pending', 'Failed', 'Invalid')",
	"tabEvent Delivery": "status IN ('Pending', 'Dead')",
	"tabDead Letter": "status IN ('Dead', 'Retrying')",
	"tabProcessed Event": "0",
}


def spread(rows: int, days: int) -> str:
	"""Returns the SQL of row ``s.seq``'s time: the last row now, the first ``days`` days ago."""
	return f"NOW(6) - INTERVAL ROUND(({rows} - s.seq) * {days * 86400 / rows}) SECOND"


def fill_deliveries(rows: int, days: int) -> None:
	"""Inserts ``rows`` deliveries: the newest 500 Pending, 2% Dead, 3% Discarded, the rest Delivered."""
	frappe.db.sql(
		f"""INSERT INTO `tabEvent Delivery` (name, creation, modified, modified_by, owner, subscription,
			event_id, event_type, ordering_key, status, attempts, next_attempt_at, delivered_at,
			last_status_code, last_latency_ms, last_error, attempt_log, envelope)
		SELECT {BASE} + x.seq, x.at, x.at, 'bench@example.com', 'bench@example.com',
			CONCAT('{SUBSCRIPTION}-', x.seq % 10), x.id, 'sales_invoice.updated',
			CONCAT('Sales Invoice/DOC-', x.seq % 50000), x.status, IF(x.status = 'Pending', 0, 1),
			IF(x.status = 'Pending', x.at, NULL), IF(x.status = 'Delivered', x.at, NULL),
			IF(x.status = 'Delivered', 200, 500), 12.5, IF(x.status IN ('Dead', 'Discarded'), 'HTTP 500', NULL),
			'[{{"status": 200, "ms": 12}}]', {ENVELOPE}
		FROM (SELECT s.seq, {spread(rows, days)} AS at, UUID() AS id,
			CASE WHEN s.seq > {rows} - 500 THEN 'Pending' WHEN s.seq % 50 = 7 THEN 'Dead'
			WHEN s.seq % 33 = 5 THEN 'Discarded' ELSE 'Delivered' END AS status
			FROM seq_1_to_{rows} s) x"""
	)


def fill_letters(rows: int, days: int) -> None:
	"""Inserts ``rows`` dead letters: a fifth open (Dead), the rest Retried or Discarded."""
	frappe.db.sql(
		f"""INSERT INTO `tabDead Letter` (name, creation, modified, modified_by, owner, source_type,
			status, subscription, reference, event_id, event_type, attempts, last_error, attempt_log,
			envelope, resolved_at)
		SELECT CONCAT('{LETTER}', x.seq), x.at, x.at, 'bench@example.com', 'bench@example.com', 'Delivery',
			x.status, '{SUBSCRIPTION}-0', CAST({BASE * 2} + x.seq AS CHAR), x.id, 'sales_invoice.updated', 5,
			'HTTP 500', '[]', {ENVELOPE}, IF(x.status = 'Dead', NULL, x.at)
		FROM (SELECT s.seq, {spread(rows, days)} AS at, UUID() AS id,
			ELT(1 + s.seq % 5, 'Dead', 'Retried', 'Discarded', 'Retried', 'Discarded') AS status
			FROM seq_1_to_{rows} s) x"""
	)


def fill_marks(rows: int, days: int) -> None:
	"""Inserts ``rows`` processed marks of three consumer groups."""
	frappe.db.sql(
		f"""INSERT INTO `tabProcessed Event` (name, creation, modified, modified_by, owner,
			consumer_group, event_id, event_type, origin_topic, origin_partition, origin_offset)
		SELECT {BASE} + s.seq, {spread(rows, days)}, {spread(rows, days)}, 'bench@example.com',
			'bench@example.com', CONCAT('{GROUP}-', s.seq % 3), UUID(), 'sales_invoice.updated',
			'erp.events', s.seq % 12, s.seq
		FROM seq_1_to_{rows} s"""
	)


def fill(args) -> None:
	started = time.perf_counter()
	event_log_scale.fill(args.events, args.days)
	fill_deliveries(args.deliveries, args.days)
	fill_letters(args.letters, args.days)
	fill_marks(args.marks, args.days)
	frappe.db.commit()
	for _, table in JOBS.values():
		frappe.db.sql(f"ANALYZE TABLE `{table}`")
	print(
		f"filled {args.events:,} events, {args.deliveries:,} deliveries, {args.letters:,} letters and "
		f"{args.marks:,} marks in {time.perf_counter() - started:.0f} s"
	)


def cleanup(args) -> None:
	"""Deletes the filled rows and the saver's ToDos, a chunk per statement."""
	event_log_scale.cleanup(args.events)
	for table in ("tabEvent Delivery", "tabProcessed Event"):
		for first in range(BASE, BASE + max(args.deliveries, args.marks) + 1, 50_000):
			frappe.db.sql(f"DELETE FROM `{table}` WHERE name > %s AND name <= %s", (first, first + 50_000))
			frappe.db.commit()
	# With the letters filed meanwhile for the filled Dead deliveries (the deliveries' safety net).
	frappe.db.sql(
		"DELETE FROM `tabDead Letter` WHERE name LIKE %s OR subscription LIKE %s",
		(f"{LETTER}%", f"{SUBSCRIPTION}-%"),
	)
	frappe.db.sql("DELETE FROM `tabToDo` WHERE description = %s", (SAVER_MARK,))
	frappe.db.commit()


def explain_chunk(table: str, statuses: tuple, age_column: str, days: int) -> str:
	"""Returns EXPLAIN's key, rows and Extra for the purge's chunk query of ``table``."""
	from frappe.utils import add_days, now_datetime

	from cauldron_fabric.services.retention import next_chunk

	sql, params = next_chunk(table, statuses, age_column, add_days(now_datetime(), -days), None, 5000)
	row = frappe.db.sql(f"EXPLAIN {sql}", params, as_dict=True)[0]
	return f"key={row.key} rows={row.rows} extra={row.Extra}"


def saver(seconds: float) -> None:
	"""Saves ToDos for ``seconds``, one commit each; prints their latencies (ms) as JSON."""
	latencies, deadline = [], time.monotonic() + seconds
	while time.monotonic() < deadline:
		started = time.perf_counter()
		frappe.get_doc({"doctype": "ToDo", "description": SAVER_MARK}).insert(ignore_permissions=True)
		frappe.db.commit()
		latencies.append((time.perf_counter() - started) * 1000)
		time.sleep(0.02)
	print(json.dumps(latencies))


def run_job(job: str) -> None:
	"""Runs one purge job, timing its statements; prints rows, seconds and the longest DELETE as JSON."""
	deletes, sql = [], frappe.db.sql

	def timed_sql(query, *args, **kwargs):
		started = time.perf_counter()
		try:
			return sql(query, *args, **kwargs)
		finally:
			if str(query).lstrip().upper().startswith("DELETE"):
				deletes.append(time.perf_counter() - started)

	frappe.db.sql = timed_sql
	started = time.perf_counter()
	error = None
	try:
		deleted = frappe.get_attr(JOBS[job][0])()
	except Exception as exc:
		deleted, error = 0, repr(exc)
	print(
		json.dumps(
			{
				"deleted": deleted,
				"seconds": time.perf_counter() - started,
				"deletes": len(deletes),
				"longest_delete": max(deletes, default=0),
				"error": error,
			}
		)
	)


def spawn(site: str, *args: str) -> subprocess.Popen:
	return subprocess.Popen(
		[sys.executable, os.path.abspath(__file__), "--site", site, *args], stdout=subprocess.PIPE, text=True
	)


def result(process: subprocess.Popen):
	out, _ = process.communicate()
	return json.loads(out.strip().splitlines()[-1])


def percentiles(latencies: list[float]) -> tuple[float, float, float]:
	ordered = sorted(latencies)
	return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1], ordered[-1]


def kept_count(table: str) -> int:
	frappe.db.rollback()
	return frappe.db.sql(f"SELECT COUNT(*) FROM `{table}` WHERE {KEPT[table]}")[0][0]


def table_count(table: str) -> int:
	frappe.db.rollback()
	return frappe.db.sql(f"SELECT COUNT(*) FROM `{table}`")[0][0]


def measure_jobs(site: str, args) -> None:
	"""For each purge: its plan, then saves alone against saves beside it, and what it kept."""
	statuses = {
		"event log": (("Published", "Recorded"), "creation"),
		"deliveries": (("Delivered", "Discarded"), "modified"),
		"dead letters": (("Retried", "Discarded"), "modified"),
		"processed marks": ((), "modified"),
	}
	for job, (_, table) in JOBS.items():
		if args.jobs and job not in args.jobs:
			continue
		print(f"{job}: {explain_chunk(table, *statuses[job], args.retention)}")
		kept = kept_count(table)
		alone = result(spawn(site, "--saver", str(args.save_seconds)))
		save = spawn(site, "--saver", str(args.save_seconds))
		time.sleep(0.5)
		purge = result(spawn(site, "--job", job))
		beside = result(save)
		base, during = percentiles(alone), percentiles(beside)
		print(
			f"  purge: {purge['deleted']:,} rows in {purge['seconds']:.1f} s, {purge['deletes']} DELETEs, "
			f"longest {purge['longest_delete'] * 1000:.0f} ms, error {purge['error']}"
		)
		print(
			"  saves (ms) alone p50/p99/max "
			+ "/".join(f"{v:.0f}" for v in base)
			+ f" ({len(alone)}), beside the purge "
			+ "/".join(f"{v:.0f}" for v in during)
			+ f" ({len(beside)}), ratio "
			+ "/".join(f"{d / b:.1f}" for d, b in zip(during, base, strict=True))
		)
		print(f"  kept rows before {kept:,}, after {kept_count(table):,}")


def measure_twice_at_once(site: str, args) -> None:
	"""Runs the Event Delivery purge in two processes at once, after one run's worth of rows aged."""
	table = "tabEvent Delivery"
	before, kept = table_count(table), kept_count(table)
	frappe.db.sql(
		"UPDATE `tabEvent Delivery` SET modified = modified - INTERVAL 40 DAY WHERE name > %s AND status = 'Delivered'",
		(BASE,),
	)
	frappe.db.commit()
	first, second = spawn(site, "--job", "deliveries"), spawn(site, "--job", "deliveries")
	one, two = result(first), result(second)
	after = table_count(table)
	print(
		f"two purges at once: {one['deleted']:,} and {two['deleted']:,} reported in {one['seconds']:.1f} and "
		f"{two['seconds']:.1f} s, errors {one['error']} / {two['error']}; rows {before:,} -> {after:,} "
		f"({before - after:,} deleted), kept rows {kept:,} -> {kept_count(table):,}"
	)


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--site", required=True)
	parser.add_argument("--events", type=int, default=500_000)
	parser.add_argument("--deliveries", type=int, default=200_000)
	parser.add_argument("--letters", type=int, default=50_000)
	parser.add_argument("--marks", type=int, default=100_000)
	parser.add_argument("--days", type=int, default=70)
	parser.add_argument("--retention", type=int, default=35)
	parser.add_argument("--save-seconds", type=float, default=15)
	parser.add_argument("--jobs", nargs="*", choices=list(JOBS))
	parser.add_argument("--keep", action="store_true", help="leave the filled rows in place")
	parser.add_argument("--no-fill", action="store_true", help="use rows a --keep run left")
	parser.add_argument("--saver", type=float, help=argparse.SUPPRESS)
	parser.add_argument("--job", help=argparse.SUPPRESS)
	args = parser.parse_args()
	frappe.init(site=args.site)
	frappe.connect()
	frappe.set_user("Administrator")
	try:
		if args.saver:
			return saver(args.saver)
		if args.job:
			return run_job(args.job)
		settings = ("retention_days", "processed_event_retention_days")
		previous = {f: frappe.db.get_single_value("Fabric Settings", f) for f in settings}
		try:
			if not args.no_fill:
				fill(args)
			for field in settings:
				frappe.db.set_single_value("Fabric Settings", field, args.retention)
			frappe.db.commit()
			measure_jobs(args.site, args)
			measure_twice_at_once(args.site, args)
		finally:
			for field, value in previous.items():
				frappe.db.set_single_value("Fabric Settings", field, value)
			frappe.db.commit()
			if not args.keep:
				cleanup(args)
	finally:
		frappe.destroy()


if __name__ == "__main__":
	main()
