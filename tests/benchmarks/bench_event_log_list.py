"""Desk's Event Log list on a site whose Event Log holds a million rows.

Fills the site's Event Log as bench_event_log_scale.py does (``--rows`` rows over ``--days``
days, mostly Published and Recorded), then calls what Desk's list view calls for each filter:
``frappe.desk.reportview.get`` with the list's fields, the DocType's sort and a page of 20, and
``frappe.desk.reportview.get_count`` with the list's limit of 1001. For each filter (none, a
Created On day weeks back, an event type, an entity, a status) it prints the median time of
both calls and EXPLAIN's index and Extra for the Event Log statement each one sends. The filled
rows are deleted at the end (``--keep`` leaves them; ``--no-fill`` reuses them).
Target: every page and count in well under 100 ms, none sorting more than a page's rows.

Run (as the bench user, from the bench's sites folder):
    ../env/bin/python /path/to/tests/benchmarks/bench_event_log_list.py --site test.localhost
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import frappe
from bench_event_log_scale import cleanup, fill
from frappe.utils import add_days, now_datetime

from cauldron_fabric.core.outbox.statements import DEFAULT_TABLE, FAILED

DOCTYPE = "Event Log"
PAGE_LENGTH = 20
COUNT_LIMIT = 1001  # frappe/list/list_view.js count_upper_bound


def list_fields() -> list[str]:
	"""Returns the fields Desk's list view asks for: standard ones, title, list columns and status."""
	meta = frappe.get_meta(DOCTYPE)
	names = ["name", "owner", "creation", "modified", "modified_by", "_user_tags", "_comments"]
	names += ["_assign", "_liked_by", "docstatus", "idx", meta.title_field]
	names += [df.fieldname for df in meta.fields if df.in_list_view] + ["status"]
	return [f"`tab{DOCTYPE}`.`{name}`" for name in dict.fromkeys(names)]


def desk_filters() -> dict[str, list]:
	"""Returns each filter timed, as the list view sends it ([doctype, field, operator, value])."""
	now = now_datetime()
	day = [str(add_days(now, -40).date())] * 2
	return {
		"unfiltered": [],
		"created on a day 40 days back": [[DOCTYPE, "creation", "Between", day]],
		"event type": [[DOCTYPE, "event_type", "=", "sales_invoice.updated"]],
		"entity": [[DOCTYPE, "entity", "=", "Sales Invoice"]],
		"status Failed": [[DOCTYPE, "status", "=", FAILED]],
	}


def page_call(filters: list) -> dict:
	meta = frappe.get_meta(DOCTYPE)
	return {
		"doctype": DOCTYPE,
		"fields": list_fields(),
		"filters": filters,
		"order_by": f"`tab{DOCTYPE}`.`{meta.sort_field}` {meta.sort_order.lower()}",
		"start": 0,
		"page_length": PAGE_LENGTH,
		"view": "List",
		"with_comment_count": 1,
	}


def count_call(filters: list) -> dict:
	return {"doctype": DOCTYPE, "filters": filters, "fields": [], "distinct": False, "limit": COUNT_LIMIT}


def timed_call(method: str, form: dict, repeat: int = 5) -> tuple[float, list[str]]:
	"""Returns the median seconds ``method`` takes with ``form`` as its request and the Event Log
	statements it sent."""
	sent: list[str] = []
	sql = frappe.db.sql

	def recording_sql(query, *args, **kwargs):
		if f"`{DEFAULT_TABLE}`" in str(query):
			sent.append(str(query))
		return sql(query, *args, **kwargs)

	times = []
	for _ in range(repeat):
		frappe.local.form_dict = frappe._dict(form)
		frappe.db.sql = recording_sql
		started = time.perf_counter()
		try:
			frappe.get_attr(method)()
		finally:
			frappe.db.sql = sql
		times.append(time.perf_counter() - started)
		frappe.db.rollback()
	return statistics.median(times), sent[: len(sent) // repeat]


def explain(query: str) -> str:
	"""Returns the index and Extra EXPLAIN gives for the Event Log in ``query``."""
	rows = frappe.db.sql(f"EXPLAIN {query}", as_dict=True)
	row = next(r for r in rows if r.table == DEFAULT_TABLE)
	return f"{row.key or '-'} ({row.Extra or ''})"


def report() -> None:
	meta = frappe.get_meta(DOCTYPE)
	print(
		f"list sorted by {meta.sort_field} {meta.sort_order}, page of {PAGE_LENGTH}, count up to {COUNT_LIMIT}"
	)
	print(f"{'filter':32} {'page ms':>8} {'count ms':>9}  page plan | count plan")
	for label, filters in desk_filters().items():
		page, page_sql = timed_call("frappe.desk.reportview.get", page_call(filters))
		count, count_sql = timed_call("frappe.desk.reportview.get_count", count_call(filters))
		plans = " | ".join(explain(q) for q in page_sql[-1:] + count_sql[-1:])
		print(f"{label:32} {page * 1000:>8.1f} {count * 1000:>9.1f}  {plans}")


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--site", required=True)
	parser.add_argument("--rows", type=int, default=1_000_000)
	parser.add_argument("--days", type=int, default=60)
	parser.add_argument("--keep", action="store_true", help="leave the filled rows in place")
	parser.add_argument("--no-fill", action="store_true", help="use rows a --keep run left")
	args = parser.parse_args()
	frappe.init(site=args.site)
	frappe.connect()
	frappe.set_user("Administrator")
	try:
		if not args.no_fill:
			started = time.perf_counter()
			fill(args.rows, args.days)
			print(f"filled {args.rows:,} rows in {time.perf_counter() - started:.0f} s")
		report()
	finally:
		if not args.keep:
			cleanup(args.rows)
		frappe.destroy()


if __name__ == "__main__":
	main()
