"""What recording a write without document hooks costs: frappe.db.set_value, db_update() and
a raw SQL UPDATE, with the fabric on against off, on a real site, in the same run.

Such a write is one UPDATE when the fabric is off; recorded, it also reads what it replaces
before, the document (with its child tables) after, and appends its event. Each kind of write
sets a value of its own, so that every write changes the document and is an event. Modes
alternate write by write as in bench_save_overhead, and each write is followed by its commit. No target: the figures tell what
an integration pays per such write (Fabric Settings → Writes without document hooks → None
turns it off), next to a Frappe save of the same document.

Run (as the bench user, from the bench's sites folder):
    ../env/bin/python /path/to/tests/benchmarks/bench_set_value.py --site test.localhost
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import frappe

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_save_overhead import on_site, order, policies, site_arguments, timed

from cauldron_fabric.tests.utils import ORDER

MODES = ("off", "recording")


def run(rounds: int, per_round: int) -> dict[tuple[str, str, str], list[float]]:
	todo = frappe.get_doc({"doctype": "ToDo", "description": "bench"}).insert()
	saved_order = frappe.get_doc(order("bench")).insert()
	frappe.db.commit()
	by_mode = policies()
	writes = {
		("todo", "set_value"): lambda n: frappe.db.set_value("ToDo", todo.name, "description", f"bench {n}"),
		("todo", "sql"): lambda n: frappe.db.sql(
			"UPDATE `tabToDo` SET description = %s WHERE name = %s", (f"bench {n}", todo.name)
		),
		("order+10 rows", "set_value"): lambda n: frappe.db.set_value(
			ORDER, saved_order.name, "title", f"bench {n}"
		),
		("order+10 rows", "db_update"): lambda n: _db_update(saved_order, n),
		("order+10 rows", "sql"): lambda n: frappe.db.sql(
			f"UPDATE `tab{ORDER}` SET title = %s WHERE name = %s", (f"bench {n}", saved_order.name)
		),
		("order+10 rows", "save"): lambda n: _save(saved_order, n),
	}
	results: dict[tuple[str, str, str], list[float]] = {}
	counter = 0
	for _ in range(rounds * per_round):
		counter += 1
		for mode in MODES[counter % 2 :] + MODES[: counter % 2]:  # rotate who goes first
			frappe.local.fabric_policy = by_mode[mode]
			for (label, write), operation in writes.items():
				results.setdefault((label, write, mode), []).append(
					timed(lambda operation=operation, n=f"{write} {counter} {mode}": operation(n))
				)
	frappe.local.fabric_policy = None
	return results


def _db_update(doc, n: str) -> None:
	doc.title = f"bench {n}"
	doc.db_update()


def _save(doc, n: str) -> None:
	doc.reload()
	doc.title = f"bench {n}"
	doc.save()


def main() -> None:
	args = site_arguments(__doc__, rounds=4, per_round=50)
	results = on_site(args.site, run, args.rounds, args.per_round)
	print(f"{args.rounds * args.per_round} writes per mode and kind, modes alternating, one commit each")
	for label, write in dict.fromkeys((label, write) for label, write, _ in results):
		base = statistics.median(results[(label, write, "off")])
		recorded = statistics.median(results[(label, write, "recording")])
		print(
			f"{label:14} {write:9} off {base * 1000:6.2f} ms  recording {recorded * 1000:6.2f} ms"
			f"  ratio {recorded / base:5.2f}"
		)


if __name__ == "__main__":
	main()
