"""Webhook deliveries per second: the fabric's subscriptions against Frappe's Webhook DocType.

Same site, same N ToDo documents, same local receiver (a separate process answering 200), in
one run. Creating the documents is not timed for either side; what is timed is delivering
their events once they are committed:

* fabric: an Event Subscription (signed, Standard Webhooks) queued one delivery per ToDo in
  the save's transaction; the timer runs the delivery worker in this process until every
  delivery is Delivered: claim, render, sign, SSRF check, pooled HTTP, settle (tracked rows).
* Frappe: a Webhook (after_insert, JSON body, HMAC signing on) for the same DocType. Frappe
  runs one RQ job per document and event, ``enqueue_webhook(doc, webhook)``, which loads the
  Webhook, renders the body, posts it and writes a Webhook Request Log. The timer calls that
  job function directly for each document, one after another, committing after each as the
  job does: a single RQ worker (this bench's ``background_workers`` is 1) without RQ's own
  per-job cost (fork, site init), so Frappe's figure is, if anything, generous.

Target: the fabric at least 10 times Frappe's rate and at least 500 deliveries/s.

Run (from the bench's sites folder, as the bench user):
    ../env/bin/python /path/to/tests/benchmarks/bench_webhook_vs_frappe.py --site b.localhost --events 2000
"""

from __future__ import annotations

import argparse
import time

import frappe

from cauldron_fabric.testing.http_receiver import start_ok_receiver

TAG = "bench-webhook-vs-frappe"


def make_todos(count: int) -> list[str]:
	names = []
	for n in range(count):
		names.append(frappe.get_doc({"doctype": "ToDo", "description": f"{TAG} {n}"}).insert().name)
		if n % 200 == 199:
			frappe.db.commit()
	frappe.db.commit()
	return names


def fabric_rate(subscription: str, count: int) -> float:
	from cauldron_fabric.delivery.worker import run_delivery_worker

	started = time.perf_counter()
	while True:
		run_delivery_worker(stop_when_idle=True, max_seconds=120, batch_size=500)
		frappe.db.rollback()
		counts = dict(
			frappe.db.sql(
				"SELECT status, COUNT(*) FROM `tabEvent Delivery` WHERE subscription = %s GROUP BY status",
				(subscription,),
			)
		)
		if counts.get("Pending", 0) == 0:
			break
	elapsed = time.perf_counter() - started
	if counts.get("Delivered", 0) != count:
		raise SystemExit(f"fabric delivered {counts} of {count}")
	return count / elapsed


def frappe_rate(webhook: str, names: list[str]) -> float:
	from frappe.integrations.doctype.webhook.webhook import enqueue_webhook

	docs = [frappe.get_doc("ToDo", name) for name in names]
	before = frappe.db.count("Webhook Request Log", {"webhook": webhook})
	started = time.perf_counter()
	for doc in docs:
		enqueue_webhook(doc, {"name": webhook})
		frappe.db.commit()
	elapsed = time.perf_counter() - started
	logged = frappe.db.count("Webhook Request Log", {"webhook": webhook}) - before
	answered = frappe.db.count("Webhook Request Log", {"webhook": webhook, "response": "ok"})
	print(f"  Frappe wrote {logged} request logs, {answered} with the receiver's 200 answer")
	return len(docs) / elapsed


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__)
	parser.add_argument("--site", required=True)
	parser.add_argument("--events", type=int, default=2000)
	args = parser.parse_args()
	frappe.init(site=args.site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	receiver, url = start_ok_receiver()
	settings = frappe.get_single("Fabric Settings")
	previous_allow_list = settings.webhook_allowed_networks
	settings.webhook_allowed_networks = "127.0.0.0/8"
	settings.save()
	subscription = frappe.get_doc(
		{
			"doctype": "Event Subscription",
			"subscription_name": f"{TAG}-{frappe.generate_hash(length=5)}",
			"event_types": "todo.created",
			"condition": f'startswith(data.payload.doc.description, "{TAG}")',
			"webhook_url": url,
		}
	).insert()
	webhook = frappe.get_doc(
		{
			"doctype": "Webhook",
			"name": f"{TAG}-{frappe.generate_hash(length=5)}",
			"webhook_doctype": "ToDo",
			"webhook_docevent": "after_insert",
			"enabled": 0,  # its jobs are run below, not by the bench's RQ worker
			"request_url": url,
			"request_method": "POST",
			"request_structure": "JSON",
			"webhook_json": '{"name": "{{ doc.name }}", "description": "{{ doc.description }}"}',
			"enable_security": 1,
			"webhook_secret": frappe.generate_hash(length=32),
		}
	).insert()
	frappe.db.commit()
	names: list[str] = []
	try:
		names = make_todos(args.events)
		fabric = fabric_rate(subscription.name, args.events)
		print(f"fabric subscription path: {fabric:8.0f} deliveries/s ({args.events} events)")
		frappe_side = frappe_rate(webhook.name, names)
		print(f"Frappe Webhook job      : {frappe_side:8.0f} deliveries/s ({args.events} events)")
		print(f"ratio                   : {fabric / frappe_side:8.1f}x (target >= 10x and >= 500/s)")
	finally:
		frappe.db.rollback()
		frappe.db.sql("DELETE FROM `tabEvent Delivery` WHERE subscription = %s", (subscription.name,))
		frappe.db.delete("Webhook Request Log", {"webhook": webhook.name})
		frappe.delete_doc("Webhook", webhook.name, force=True)
		frappe.delete_doc("Event Subscription", subscription.name, force=True)
		for name in names:
			frappe.db.delete("ToDo", {"name": name})
		settings = frappe.get_single("Fabric Settings")
		settings.webhook_allowed_networks = previous_allow_list
		settings.save()
		frappe.db.commit()
		receiver.terminate()
		frappe.destroy()


if __name__ == "__main__":
	main()
