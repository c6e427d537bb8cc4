"""Document save time with the fabric on against off, on a real site, in the same run.

Modes alternate operation by operation (off, recording, publishing, off, …), so drift on a
noisy machine hits all modes alike. A mode is the emit policy Fabric Settings produce
(enabled, and whether a broker is configured), swapped in directly so that switching costs
nothing. An operation is one save (or insert) of a document plus its commit: the outbox row,
the schema check, delivery planning and the after-commit wake-up are all inside it.
Target: at most 10% slower at the median.

Each line also gives the median time the operation spent in the fabric's own INSERTs (the
outbox row; a delivery row where a subscription matches), as a share of the operation with the
fabric off: how much of the time added is the database taking the event row, which no change
to the fabric's Python can save.

Run (as the bench user, from the bench's sites folder):
    ../env/bin/python /path/to/tests/benchmarks/bench_save_overhead.py --site test.localhost
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import frappe

from cauldron_fabric.emit import writes
from cauldron_fabric.emit.policy import load_policy
from cauldron_fabric.tests.utils import ORDER, ensure_test_doctypes

MODES = ("off", "recording", "publishing")


def policies() -> dict:
	"""Returns the emit policy of each mode, derived from the site's own Fabric Settings."""
	base = load_policy()
	return {
		"off": replace(base, enabled=False),
		"recording": replace(base, enabled=True, publishing=False),
		"publishing": replace(base, enabled=True, publishing=True),
	}


def timed(operation) -> float:
	started = time.perf_counter()
	operation()
	frappe.db.commit()
	return time.perf_counter() - started


class OutboxWrites:
	"""Times the fabric's own INSERTs in the caller's transaction (the outbox row, deliveries),
	so the report can tell how much of the added time is the database taking the event row."""

	def __init__(self):
		self.seconds = 0.0
		self.original = writes.execute_in_transaction

	def __enter__(self):
		def timed_write(sql, params):
			started = time.perf_counter()
			try:
				self.original(sql, params)
			finally:
				self.seconds += time.perf_counter() - started

		writes.execute_in_transaction = timed_write
		return self

	def __exit__(self, *exc):
		writes.execute_in_transaction = self.original

	def taken(self) -> float:
		"""Returns the time spent in the INSERTs since the last call."""
		seconds, self.seconds = self.seconds, 0.0
		return seconds


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
	"""Returns each (document, operation, mode)'s times, and under (document, operation, mode,
	"outbox") the time each operation spent in the fabric's own INSERTs."""
	saved_docs = {label: frappe.get_doc(make()).insert() for label, make, _ in KINDS}
	frappe.db.commit()
	by_mode = policies()
	results: dict[tuple, list[float]] = {}
	counter = 0
	with OutboxWrites() as outbox:
		for _ in range(rounds * per_round):
			counter += 1
			for mode in MODES[counter % 3 :] + MODES[: counter % 3]:  # rotate who goes first
				frappe.local.fabric_policy = by_mode[mode]
				for label, make, field in KINDS:
					doc = saved_docs[label]
					doc.set(field, f"bench {counter} {mode}")
					for operation, run_it in (
						("save", doc.save),
						("insert", lambda make=make: frappe.get_doc(make()).insert()),
					):
						outbox.taken()
						results.setdefault((label, operation, mode), []).append(timed(run_it))
						results.setdefault((label, operation, mode, "outbox"), []).append(outbox.taken())
	frappe.local.fabric_policy = None
	return results


def site_arguments(description: str, rounds: int, per_round: int) -> argparse.Namespace:
	"""Parses the site benchmarks' options: the site, and rounds and operations per round
	(defaulting to ``rounds`` and ``per_round``)."""
	parser = argparse.ArgumentParser(description=description)
	parser.add_argument("--site", default="test.localhost")
	parser.add_argument("--rounds", type=int, default=rounds)
	parser.add_argument("--per-round", type=int, default=per_round)
	return parser.parse_args()


def on_site(site: str, run, *args):
	"""Returns what ``run(*args)`` returns, run on ``site`` as Administrator with the test DocTypes,
	then deletes the events, ToDos and orders it made (titled or described "bench …")."""
	frappe.init(site=site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	ensure_test_doctypes()
	start = frappe.db.sql("SELECT COALESCE(MAX(name), 0) FROM `tabEvent Log`")[0][0]
	try:
		return run(*args)
	finally:
		frappe.db.sql("DELETE FROM `tabToDo` WHERE description = 'bench' OR description LIKE 'bench %%'")
		frappe.db.sql(f"DELETE FROM `tab{ORDER}` WHERE title = 'bench' OR title LIKE 'bench %%'")
		# Last: the raw deletes above are deleted events of their own.
		frappe.db.sql("DELETE FROM `tabEvent Log` WHERE name > %s", (start,))
		frappe.db.commit()
		frappe.destroy()


def main() -> None:
	args = site_arguments(__doc__, rounds=6, per_round=100)
	results = on_site(args.site, run, args.rounds, args.per_round)
	print(
		f"{args.rounds * args.per_round} operations per mode and document, modes alternating, one commit each"
	)
	ratios = {}
	for label, _, _ in KINDS:
		for operation in ("save", "insert"):
			base = statistics.median(results[(label, operation, "off")])
			for mode in MODES:
				median = statistics.median(results[(label, operation, mode)])
				ratios[(label, operation, mode)] = median / base
				inserts = statistics.median(results[(label, operation, mode, "outbox")])
				print(
					f"{label:14} {operation:6} {mode:10} median {median * 1000:7.2f} ms  ratio to off {median / base:5.3f}"
					f"  (outbox INSERTs {inserts * 1000:5.2f} ms, {inserts / base:5.1%} of off)"
				)
	for label, _, _ in KINDS:
		worst = max(ratio for key, ratio in ratios.items() if key[0] == label)
		print(f"{label}: worst median ratio {worst:.3f} (target <= 1.10)")


if __name__ == "__main__":
	main()
