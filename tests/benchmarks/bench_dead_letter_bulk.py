"""Bulk Retry and Discard of dead letters: time per letter at the start and the end of a batch.

For each batch size N, files N consumer dead letters (RabbitMQ, the machine's broker on
127.0.0.1, their group's queue declared so that Retry succeeds; or, with ``--broker kafka``, a
test Kafka broker started for the run, which creates the group's retry topic) and N delivery dead letters (a
webhook subscription's dead deliveries), then times ``act_on_each`` as the bulk API calls it:
Retry of each kind, then Discard of each kind on a fresh set. Per letter, it prints the mean
time of the whole batch and of its first and last 10%, and their ratio: a ratio near 1 means
per-letter time is flat; above 1, it grows as the batch goes on. Compare within a run (the
machine is shared and noisy).

``--profile FILE`` writes a cProfile of the largest consumer Retry to FILE (read it with
``python -m pstats FILE``). Fabric Settings are pointed at the broker for the run and restored
after; every letter, delivery, subscription and queue made is deleted.

Run (as the bench user, from the bench's sites folder):
    ../env/bin/python /path/to/tests/benchmarks/bench_dead_letter_bulk.py --site c.localhost
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import time

import frappe

from cauldron_fabric.consume.dead_letters import record_dead_letter
from cauldron_fabric.core.consumer.messages import DeadLetter, Failure, Origin
from cauldron_fabric.core.consumer.rabbitmq_queues import declare_group_queues
from cauldron_fabric.core.delivery import DEAD, DeliveryRequest
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.delivery.dead_letters import record_dead_letters
from cauldron_fabric.delivery.recording import insert_deliveries
from cauldron_fabric.services import dead_letter_bulk
from cauldron_fabric.testing.events import document_event
from cauldron_fabric.testing.kafka_broker import KafkaBroker
from cauldron_fabric.testing.rabbitmq import PASSWORD, SETTINGS_URL, RabbitMQ
from cauldron_fabric.tests.utils import fabric_settings

TYPE = "bench_dead_letters.charge.created"
MARK = "bench-dead-letters"


def event(n: int) -> Envelope:
	return document_event(
		"Charge", f"CH-{n}", "created", {"n": n}, type=TYPE, source="urn:bench", user=None, tenant=None
	)


def consumer_letters(group: str, count: int, broker: str = "amqp") -> list[str]:
	"""Files ``count`` consumer letters of ``group`` as the consumer does; returns their names."""
	for n in range(count):
		envelope = event(n)
		record_dead_letter(
			DeadLetter(
				group=group,
				origin=Origin("charges.created", 0, n),
				attempts=3,
				failure=Failure("attempts-exhausted", "builtins.RuntimeError", "bench"),
				destination=f"{group}.dead",
				body=envelope.to_json().encode(),
				envelope=envelope,
				broker=broker,
			)
		)
	return _names({"source_type": "Consumer", "consumer_group": group, "status": "Dead"})


def delivery_letters(subscription: str, count: int) -> list[str]:
	"""Files ``count`` letters of ``subscription``'s dead deliveries; returns their names."""
	frappe.db.sql("DELETE FROM `tabEvent Delivery` WHERE subscription = %s", (subscription,))
	insert_deliveries([DeliveryRequest(subscription, event(n)) for n in range(count)])
	frappe.db.sql(
		"UPDATE `tabEvent Delivery` SET status = %s, last_error = 'bench' WHERE subscription = %s",
		(DEAD, subscription),
	)
	frappe.db.commit()
	while record_dead_letters():
		pass
	return _names({"source_type": "Delivery", "subscription": subscription, "status": "Dead"})


def _names(filters: dict) -> list[str]:
	return frappe.get_all("Dead Letter", filters=filters, pluck="name", order_by="creation asc")


def timed(action: str, names: list[str], profile: cProfile.Profile | None = None) -> list[float]:
	"""Runs ``act_on_each`` as the bulk API does; returns each letter's time, in seconds."""
	ends: list[float] = []
	act_on_one = dead_letter_bulk._act_on_one

	def timing(*args):
		went = act_on_one(*args)
		ends.append(time.perf_counter())
		return went

	dead_letter_bulk._act_on_one = timing
	try:
		if profile:
			profile.enable()
		start = time.perf_counter()
		result = dead_letter_bulk.act_on_each(action, names, "bench")
	finally:
		if profile:
			profile.disable()
		dead_letter_bulk._act_on_one = act_on_one
	assert result["done"] == len(names), f"{action}: {result['failed'][:3]}"
	return [end - begin for begin, end in zip([start, *ends], ends, strict=False)]


def report(label: str, times: list[float]) -> None:
	tenth = max(len(times) // 10, 1)
	first, last = statistics.mean(times[:tenth]), statistics.mean(times[-tenth:])
	print(
		f"{label:<28} {len(times):>5} letters {sum(times):7.2f} s  per letter: mean {statistics.mean(times) * 1000:6.2f} ms"
		f"  first 10% {first * 1000:6.2f} ms  last 10% {last * 1000:6.2f} ms  last/first {last / first:5.2f}"
	)


def run_size(count: int, exchange: str, subscription: str, profile_path: str | None, kafka: bool) -> None:
	rabbit = RabbitMQ()
	group = f"bench-dl-{frappe.generate_hash(length=6)}"
	declare_group_queues(rabbit.channel, group, exchange, [TYPE], [1.0])
	broker, label = ("kafka", "Kafka") if kafka else ("amqp", "RabbitMQ")
	try:
		for action in ("retry", "discard"):
			consumers = consumer_letters(group, count, broker)
			deliveries = delivery_letters(subscription, count)
			profile = cProfile.Profile() if profile_path and action == "retry" else None
			report(f"{action} consumer ({label})", timed(action, consumers, profile))
			report(f"{action} delivery (webhook)", timed(action, deliveries))
			if profile:
				profile.dump_stats(profile_path)
			rabbit.channel.queue_purge(group)
	finally:
		rabbit.delete((group, f"{group}.dead", f"{group}.retry.1000ms"))
		rabbit.close()
		frappe.db.sql("DELETE FROM `tabDead Letter` WHERE consumer_group = %s", (group,))
		frappe.db.sql("DELETE FROM `tabDead Letter` WHERE subscription = %s", (subscription,))
		frappe.db.sql("DELETE FROM `tabEvent Delivery` WHERE subscription = %s", (subscription,))
		frappe.db.commit()


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__)
	parser.add_argument("--site", default="test.localhost")
	parser.add_argument("--sizes", default="100,500,2000", help="batch sizes, comma-separated")
	parser.add_argument("--profile", help="write a cProfile of the largest consumer Retry here")
	parser.add_argument("--broker", choices=("rabbitmq", "kafka"), default="rabbitmq")
	args = parser.parse_args()
	if args.broker == "kafka":
		with KafkaBroker() as kafka:
			run(args, kafka.bootstrap)
	else:
		run(args, None)


def run(args: argparse.Namespace, bootstrap: str | None) -> None:
	sizes = [int(size) for size in args.sizes.split(",")]
	frappe.init(site=args.site, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	exchange = f"{MARK}.{frappe.generate_hash(length=6)}"
	kafka = {"bootstrap_servers": bootstrap} if bootstrap else {}
	settings = fabric_settings(
		**kafka,
		rabbitmq_url=SETTINGS_URL,
		rabbitmq_password=PASSWORD,
		rabbitmq_exchange=exchange,
		webhook_allowed_networks="127.0.0.0/8",
	)
	settings.__enter__()
	subscription = frappe.get_doc(
		{
			"doctype": "Event Subscription",
			"subscription_name": f"{MARK}-{frappe.generate_hash(length=6)}",
			"event_types": f"{TYPE}",
			"webhook_url": "http://127.0.0.1:9/bench",
			"max_attempts": 1,
		}
	).insert()
	frappe.db.commit()
	try:
		print(f"sizes {sizes}; per letter: mean, first and last 10% of the batch")
		for count in sizes:
			profile = args.profile if count == max(sizes) else None
			run_size(count, exchange, subscription.name, profile, bootstrap is not None)
	finally:
		frappe.delete_doc("Event Subscription", subscription.name, force=True)
		frappe.db.commit()
		settings.__exit__(None, None, None)
		rabbit = RabbitMQ()
		rabbit.delete((), (exchange, f"{exchange}.dlx"))
		rabbit.close()
		frappe.destroy()


if __name__ == "__main__":
	main()
