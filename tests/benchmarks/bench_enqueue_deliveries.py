"""Cost of routing one recorded event to subscriptions (``enqueue_deliveries``) on a real site.

``record()`` calls it on every document save, in the save's transaction. Measured per event,
inside a transaction that is rolled back, for: no subscription on the site; 10 subscriptions of
which none matches; 10 of which 3 match (one with a content filter), so 3 rows are inserted.
Each case also times a whole ToDo save plus commit, for scale.

Run (from the bench's sites folder, as the bench user):
    ../env/bin/python /path/to/tests/benchmarks/bench_enqueue_deliveries.py --site b.localhost
"""

from __future__ import annotations

import argparse
import statistics
import time

import frappe

PREFIX = "bench-enqueue-"


def subscriptions(matching: int, total: int) -> list[str]:
	names = []
	for n in range(total):
		pattern = "todo.*" if n < matching else f"sales_invoice_{n}.*"
		condition = 'data.payload.doc.status == "Open"' if n == 0 and matching else ""
		doc = frappe.get_doc(
			{
				"doctype": "Event Subscription",
				"subscription_name": f"{PREFIX}{n}",
				"event_types": pattern,
				"condition": condition,
				"webhook_url": f"https://receiver{n}.example.com/hook",
			}
		).insert()
		names.append(doc.name)
	frappe.db.commit()
	return names


def remove() -> None:
	frappe.db.sql("DELETE FROM `tabEvent Delivery` WHERE subscription LIKE %s", (PREFIX + "%",))
	for name in frappe.get_all("Event Subscription", filters={"name": ("like", PREFIX + "%")}, pluck="name"):
		frappe.delete_doc("Event Subscription", name, force=True)
	frappe.db.commit()


def per_event_us(envelopes, repeat: int) -> float:
	from cauldron_fabric.delivery.recording import enqueue_deliveries

	enqueue_deliveries([envelopes[0]])  # warm: index built, statement prepared
	frappe.db.rollback()
	samples = []
	for _ in range(repeat):
		started = time.perf_counter()
		for envelope in envelopes:
			enqueue_deliveries([envelope])
		samples.append((time.perf_counter() - started) / len(envelopes) * 1e6)
		frappe.db.rollback()
	return statistics.median(samples)


def save_ms(todo, rounds: int) -> float:
	samples = []
	for n in range(rounds):
		todo.description = f"bench {n} {time.monotonic()}"
		started = time.perf_counter()
		todo.save()
		frappe.db.commit()
		samples.append((time.perf_counter() - started) * 1000)
	return statistics.median(samples)


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__)
	parser.add_argument("--site", required=True)
	parser.add_argument("--events", type=int, default=500)
	parser.add_argument("--repeat", type=int, default=7)
	args = parser.parse_args()
	frappe.init(site=args.site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	from cauldron_fabric.emit.recorder import new_envelope

	remove()
	if frappe.db.count("Event Subscription"):
		print(f"note: the site has {frappe.db.count('Event Subscription')} other subscription(s)")
	todo = frappe.get_doc({"doctype": "ToDo", "description": "bench", "status": "Open"}).insert()
	frappe.db.commit()
	payload = {"doc": todo.as_dict(convert_dates_to_str=True), "changes": {"description": ["a", "b"]}}
	envelopes = [
		new_envelope("todo.updated", "ToDo", todo.name, "updated", payload) for _ in range(args.events)
	]
	try:
		for label, matching, total in (
			("no subscription", 0, 0),
			("10, none match", 0, 10),
			("10, 3 match", 3, 10),
		):
			subscriptions(matching, total)
			cost = per_event_us(envelopes, args.repeat)
			saved = save_ms(todo, 50)
			print(
				f"{label:>16}: enqueue_deliveries {cost:8.1f} µs/event   ToDo save+commit median {saved:6.2f} ms"
			)
			remove()
	finally:
		remove()
		frappe.delete_doc("ToDo", todo.name, force=True)
		frappe.db.commit()
		frappe.destroy()


if __name__ == "__main__":
	main()
