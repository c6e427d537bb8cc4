"""Consumed events per second into Frappe, against a bare confluent-kafka loop on the same topic.

One topic of N events on a fresh test broker, read in the same run by:

1. a bare confluent-kafka consumer loop (poll, count; nothing else) — the baseline;
2. the site's consumer with a handler that does nothing (envelope, schema check, Processed Event
   mark, commit per event, offsets) — the fabric's own cost;
3. the site's consumer with a handler that inserts one ToDo per event (the ToDo's own
   ``todo.created`` event goes to the outbox in the same transaction) — the figure that matters.

Each is timed from its first event to its last, so group joins do not count. Fabric Settings
are pointed at the test broker for the run and restored after; everything written is deleted.

Run (as the bench user, from the bench's sites folder):
    ../env/bin/python /path/to/tests/benchmarks/bench_consume_throughput.py --site c.localhost
"""

from __future__ import annotations

import argparse
import time

import frappe
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from cauldron_fabric.consume.runner import run_consumer_for
from cauldron_fabric.core.cloudevents import kafka_headers
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.testing.events import document_event
from cauldron_fabric.testing.kafka_broker import KafkaBroker

TYPE = "bench_consume.item.created"
MARK = "bench-consume"


def event(n: int) -> Envelope:
	payload = {"n": n, "title": f"item {n}"}
	return document_event(
		"Item", f"I-{n % 64}", "created", payload, type=TYPE, source="urn:bench", user=None, tenant=None
	)


def fill(bootstrap: str, topic: str, count: int) -> None:
	admin = AdminClient({"bootstrap.servers": bootstrap})
	admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(10)
	producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
	for n in range(count):
		e = event(n)
		producer.produce(
			topic, e.to_json().encode(), e.partition_key.encode(), headers=list(kafka_headers(e))
		)
		if n % 1000 == 0:
			producer.poll(0)
	producer.flush(30)


def bare_loop(bootstrap: str, topic: str, count: int) -> float:
	consumer = Consumer(
		{
			"bootstrap.servers": bootstrap,
			"group.id": f"bench-bare-{time.monotonic_ns()}",
			"auto.offset.reset": "earliest",
			"session.timeout.ms": 6000,
		}
	)
	consumer.subscribe([topic])
	seen, first = 0, None
	while seen < count:
		message = consumer.poll(1.0)
		if message is None or message.error():
			continue
		first = first or time.perf_counter()
		seen += 1
	elapsed = time.perf_counter() - first
	consumer.close()
	return count / elapsed


def fabric(topic: str, count: int, handler) -> float:
	times: list[float] = []

	def timed(envelope, context):
		handler(envelope, context)
		times.append(time.perf_counter())

	group = f"bench-fabric-{frappe.generate_hash(length=6)}"
	run_consumer_for(
		group=group,
		topics=[topic],
		stop_when_idle=True,
		max_seconds=600,
		extra_handlers={TYPE: timed},
		broker_options={"session_timeout_ms": 6000},
	)
	frappe.db.sql("DELETE FROM `tabProcessed Event` WHERE consumer_group = %s", (group,))
	frappe.db.commit()
	assert len(times) == count, f"the consumer handled {len(times)} of {count} events"
	return (count - 1) / (times[-1] - times[0])


def nothing(envelope, context) -> None:
	pass


def insert_todo(envelope, context) -> None:
	frappe.get_doc({"doctype": "ToDo", "description": f"{MARK} {envelope.data.payload['n']}"}).insert()


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__)
	parser.add_argument("--site", default="test.localhost")
	parser.add_argument("--events", type=int, default=3000)
	args = parser.parse_args()
	frappe.init(site=args.site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	settings = frappe.get_single("Fabric Settings")
	saved = {f: settings.get(f) for f in ("bootstrap_servers", "topic_template", "handler_user")}
	start = frappe.db.sql("SELECT COALESCE(MAX(name), 0) FROM `tabEvent Log`")[0][0]
	with KafkaBroker() as broker:
		topic = f"bench.consume.{frappe.generate_hash(length=6)}"
		settings.update(
			{
				"bootstrap_servers": broker.bootstrap,
				"topic_template": "bench.{domain}",
				"handler_user": "Administrator",
			}
		)
		settings.save(ignore_permissions=True)
		frappe.db.commit()
		try:
			fill(broker.bootstrap, topic, args.events)
			results = {
				"bare confluent-kafka loop": bare_loop(broker.bootstrap, topic, args.events),
				"fabric consumer, handler does nothing": fabric(topic, args.events, nothing),
				"fabric consumer, handler inserts a ToDo": fabric(topic, args.events, insert_todo),
			}
		finally:
			settings = frappe.get_single("Fabric Settings")
			settings.update(saved)
			settings.save(ignore_permissions=True)
			frappe.db.sql("DELETE FROM `tabToDo` WHERE description LIKE %s", (f"{MARK} %",))
			frappe.db.sql("DELETE FROM `tabEvent Log` WHERE name > %s", (start,))
			frappe.db.commit()
			frappe.destroy()
	baseline = results["bare confluent-kafka loop"]
	print(f"{args.events} events, 3 partitions, one consumer process each, timed first to last event")
	for label, rate in results.items():
		print(f"{label:<42} {rate:10.0f} events/s   {rate / baseline:7.2%} of the bare loop")


if __name__ == "__main__":
	main()
