"""What recording a raw SQL statement over many documents costs, per document, against a save
of such a document with the fabric off, on a real site, in the same run.

A patch or a status updater writes thousands of documents with one UPDATE or DELETE. Off,
that is one statement; recorded, the fabric reads the rows it is about to write, then each
document (with its child tables) and appends an event per document (``emit/sql_writes.py``).
The baseline is what the same documents cost saved one at a time with the fabric off, the
other way their owner could have written them. Each round times, for ToDos and for orders with
ten rows: an UPDATE of all of them and a DELETE of all of them, recorded and off (each with
its commit), and saves of a sample of them; the documents are inserted again (off) between.
For the orders, an UPDATE of all their rows too (each order's update at commit, its table as
it was put aside until then), timed, and once more recorded under tracemalloc for the peak of
memory it takes. No target: the figures tell what a statement over a table costs with the
fabric on.

Run (as the bench user, from the bench's sites folder):
    ../env/bin/python /path/to/tests/benchmarks/bench_sql_many.py --site test.localhost --documents 2000
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import frappe

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_save_overhead import on_site, order, policies

from cauldron_fabric.tests.utils import ORDER, ORDER_ITEM

# (label, table, document to insert, the column an UPDATE changes)
KINDS = (
	("todo", "tabToDo", lambda: {"doctype": "ToDo", "description": "bench"}, "description"),
	("order+10 rows", f"tab{ORDER}", lambda: order("bench"), "title"),
)
SAVED = 100  # documents saved one at a time (fabric off) per round, for the baseline


def inserted(make, count: int) -> list:
	docs = [frappe.get_doc(make()).insert() for _ in range(count)]
	frappe.db.commit()
	return docs


def per_document(statement: str, count: int) -> float:
	started = time.perf_counter()
	frappe.db.sql(statement)
	frappe.db.commit()
	return (time.perf_counter() - started) / count


def rows_update(docs: list) -> str:
	"""Returns an UPDATE of every row of the orders ``docs``."""
	names = ", ".join(frappe.db.escape(doc.name) for doc in docs)
	return f"UPDATE `tab{ORDER_ITEM}` SET `qty` = `qty` + 1 WHERE `parent` IN ({names})"


def run(rounds: int, documents: int) -> dict[tuple[str, str], list[float]]:
	by_mode = policies()
	results: dict[tuple[str, str], list[float]] = {}
	for round_ in range(rounds):
		for label, table, make, column in KINDS:
			where = f"`{column}` = 'bench' OR `{column}` LIKE 'bench %%'"
			for mode in ("off", "recording") if round_ % 2 else ("recording", "off"):
				frappe.local.fabric_policy = by_mode["off"]
				docs = inserted(make, documents)
				frappe.local.fabric_policy = by_mode[mode]
				update = f"UPDATE `{table}` SET `{column}` = 'bench {round_} {mode}' WHERE {where}"
				results.setdefault((label, f"update {mode}"), []).append(per_document(update, documents))
				if label.startswith("order"):
					rows = rows_update(docs)
					results.setdefault((label, f"rows update {mode}"), []).append(
						per_document(rows, documents)
					)
					if mode == "recording" and round_ == rounds - 1:
						tracemalloc.start()
						frappe.db.sql(rows)
						frappe.db.commit()
						results[(label, "rows update peak")] = [tracemalloc.get_traced_memory()[1]]
						tracemalloc.stop()
				delete = f"DELETE FROM `{table}` WHERE {where}"
				results.setdefault((label, f"delete {mode}"), []).append(per_document(delete, documents))
			frappe.local.fabric_policy = by_mode["off"]
			docs = inserted(make, SAVED)
			started = time.perf_counter()
			for n, doc in enumerate(docs):
				doc.set(column, f"bench saved {n}")
				doc.save()
				frappe.db.commit()
			results.setdefault((label, "save off"), []).append((time.perf_counter() - started) / SAVED)
			frappe.db.sql(f"DELETE FROM `{table}` WHERE {where}")
			frappe.db.commit()
	frappe.local.fabric_policy = None
	return results


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__)
	parser.add_argument("--site", default="test.localhost")
	parser.add_argument("--documents", type=int, default=2000)
	parser.add_argument("--rounds", type=int, default=2)
	args = parser.parse_args()
	results = on_site(args.site, run, args.rounds, args.documents)
	print(f"{args.documents} documents per statement, {args.rounds} rounds, medians per document")
	for label, *_ in KINDS:
		save = statistics.median(results[(label, "save off")])
		print(f"{label:14} {'save,':12} off {save * 1000:7.3f} ms")
		for operation in ("update", "rows update", "delete"):
			if (label, f"{operation} off") not in results:
				continue
			off = statistics.median(results[(label, f"{operation} off")])
			recorded = statistics.median(results[(label, f"{operation} recording")])
			print(
				f"{label:14} {operation + ',':12} off {off * 1000:7.3f} ms   recorded {recorded * 1000:7.3f} ms"
				f"   recorded / a save off {recorded / save:5.2f}"
			)
	for (label, operation), (peak,) in ((k, v) for k, v in results.items() if k[1].endswith("peak")):
		print(f"{label:14} {operation}, recorded: {peak / 2**20:.1f} MiB traced")
	print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
	main()
