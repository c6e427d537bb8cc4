"""Document save time with the fabric on against off, on a real site, in the same run.

Each round runs the same operations in every mode, interleaved, so drift on a noisy machine
hits all modes alike. An operation is one save (or insert) of a document plus its commit:
the outbox row, the after-commit wake-up and the policy lookup are all inside it.
Target: at most 10% slower at the median.

Run (as the bench user, from the bench's sites folder):
    ../env/bin/python /path/to/tests/benchmarks/bench_save_overhead.py --site test.localhost
"""

from __future__ import annotations

import argparse
import statistics
import time

import frappe

from cauldron_fabric.tests.utils import ORDER, ensure_test_doctypes

MODES = {
	"off": {"enabled": 0, "bootstrap_servers": ""},
	"recording": {"enabled": 1, "bootstrap_servers": ""},
	"publishing": {"enabled": 1, "bootstrap_servers": "127.0.0.1:9"},
}


def set_mode(values: dict) -> None:
	settings = frappe.get_single("Fabric Settings")
	settings.update(values)
	settings.save(ignore_permissions=True)
	frappe.db.commit()


def timed(operation) -> float:
	started = time.perf_counter()
	operation()
	frappe.db.commit()
	return time.perf_counter() - started


def order(title: str) -> dict:
	rows = [{"item": f"item {n}", "qty": n} for n in range(10)]
	return {"doctype": ORDER, "title": title, "company": "Bench Ltd", "grand_total": 99.5, "items": rows}


# (label, document to insert, field to change on save): a minimal document and an order
# with ten child rows, closer to the documents ERPNext users save all day.
KINDS = (
	("todo", lambda: {"doctype": "ToDo", "description": "bench"}, "description"),
	("order+10 rows", lambda: order("bench"), "title"),
)


def run(rounds: int, per_round: int) -> dict[tuple[str, str, str], list[float]]:
	saved_docs = {label: frappe.get_doc(make()).insert() for label, make, _ in KINDS}
	frappe.db.commit()
	results: dict[tuple[str, str, str], list[float]] = {}
	counter = 0
	for _ in range(rounds):
		for mode, values in MODES.items():
			set_mode(values)
			for _ in range(per_round):
				counter += 1
				for label, make, field in KINDS:
					doc = saved_docs[label]
					doc.set(field, f"bench {counter}")
					results.setdefault((label, "save", mode), []).append(timed(doc.save))
					results.setdefault((label, "insert", mode), []).append(
						timed(lambda make=make: frappe.get_doc(make()).insert())
					)
	return results


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__)
	parser.add_argument("--site", default="test.localhost")
	parser.add_argument("--rounds", type=int, default=6)
	parser.add_argument("--per-round", type=int, default=100)
	args = parser.parse_args()
	frappe.init(site=args.site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	ensure_test_doctypes()
	settings = frappe.get_single("Fabric Settings")
	saved = {field: settings.get(field) for field in ("enabled", "bootstrap_servers")}
	start = frappe.db.sql("SELECT COALESCE(MAX(name), 0) FROM `tabEvent Log`")[0][0]
	try:
		results = run(args.rounds, args.per_round)
	finally:
		set_mode(saved)
		frappe.db.sql("DELETE FROM `tabEvent Log` WHERE name > %s", (start,))
		frappe.db.sql("DELETE FROM `tabToDo` WHERE description = 'bench' OR description LIKE 'bench %%'")
		frappe.db.sql(f"DELETE FROM `tab{ORDER}` WHERE title = 'bench' OR title LIKE 'bench %%'")
		frappe.db.commit()
		frappe.destroy()
	print(f"{args.rounds} rounds x {args.per_round} operations per mode and document, one commit each")
	ratios = {}
	for label, _, _ in KINDS:
		for operation in ("save", "insert"):
			base = statistics.median(results[(label, operation, "off")])
			for mode in MODES:
				median = statistics.median(results[(label, operation, mode)])
				ratios[(label, operation, mode)] = median / base
				print(
					f"{label:14} {operation:6} {mode:10} median {median * 1000:7.2f} ms  ratio to off {median / base:5.3f}"
				)
	for label, _, _ in KINDS:
		worst = max(ratio for key, ratio in ratios.items() if key[0] == label)
		print(f"{label}: worst median ratio {worst:.3f} (target <= 1.10)")


if __name__ == "__main__":
	main()
