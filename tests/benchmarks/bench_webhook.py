"""Webhook deliveries per second to a local receiver, through the fabric's delivery worker.

The receiver is a separate process (a threaded HTTP/1.1 server answering 200), so it does not
share the sender's interpreter lock. The fabric side is the whole delivery path: matching
subscription, queued delivery (memory store, or MariaDB with ``--store mariadb``), claim,
rendering, Standard Webhooks signing, the SSRF check, the pinned pooled HTTP call,
settlement, and the worker's heartbeat to Redis (at most once a second). The baseline is a
bare ``requests.Session`` posting the same bodies with the same number of threads and no
signing, checking or tracking.
``--processes 2`` runs two worker processes on one MariaDB queue, the way workers scale out.
Target: at least 500 deliveries/s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

import redis  # noqa: E402
import requests  # noqa: E402

from cauldron_fabric.core.delivery import (  # noqa: E402
	AddressPolicy,
	DeliveryEngine,
	DeliveryHeartbeat,
	DeliveryWorker,
	Destinations,
	MemoryDeliveries,
	SqlDeliveryStore,
	WebhookSender,
	build_index,
	build_subscription,
	create_table_sql,
	generate_secret,
	plan_deliveries,
)
from cauldron_fabric.testing.http_receiver import start_ok_receiver  # noqa: E402
from conftest import connect_db, make_envelope, scratch_table  # noqa: E402


def baseline_rate(url: str, bodies: list[bytes], threads: int) -> float:
	session = requests.Session()
	session.trust_env = False  # like the fabric's sender: no proxy or .netrc lookups per request
	adapter = requests.adapters.HTTPAdapter(pool_connections=threads, pool_maxsize=threads)
	session.mount("http://", adapter)

	def post(body: bytes) -> None:
		session.post(
			url, data=body, headers={"Content-Type": "application/json"}, timeout=10
		).raise_for_status()

	started = time.perf_counter()
	with ThreadPoolExecutor(threads) as pool:
		list(pool.map(post, bodies))
	return len(bodies) / (time.perf_counter() - started)


def run_worker(url: str, secret: str, threads: int, batch: int, store) -> None:
	"""Delivers until nothing is left to claim (one worker process's whole life in the benchmark)."""
	subscription = build_subscription("bench", url, event_types=["*"], secret=secret, timeout=10)
	sender = WebhookSender(AddressPolicy.from_allow_list(["127.0.0.0/8"]), pool_size=threads)
	# The heartbeat a worker on a site publishes: to Redis, at most once a second.
	redis_client, key = redis.Redis.from_url("redis://127.0.0.1:6379"), "cauldron_fabric_bench:workers"
	name = f"bench:{os.getpid()}"
	heartbeat = DeliveryHeartbeat(lambda status: redis_client.hset(key, name, json.dumps(status)))
	engine = DeliveryEngine(Destinations(sender=sender), concurrency=threads, on_waiting=heartbeat.beat)
	heartbeat.running = engine.running
	worker = DeliveryWorker(store, {"bench": subscription}.get, engine, batch_size=batch)
	while (report := worker.deliver_due()).claimed:
		heartbeat.count(report)
	redis_client.hdel(key, name)
	engine.close()
	sender.close()


def fabric_rate(url: str, envelopes, args) -> tuple[float, dict]:
	secret = generate_secret()
	index = build_index([build_subscription("bench", url, event_types=["*"], secret=secret)])
	with ExitStack() as stack:
		if args.store == "mariadb":
			table, sequence = stack.enter_context(
				scratch_table("Event Delivery bench", create_table_sql, SqlDeliveryStore)
			)
			store = SqlDeliveryStore(connect_db, table=table, sequence=sequence)
		else:
			store = MemoryDeliveries().session()
		for start in range(0, len(envelopes), 1000):
			store.enqueue([r for e in envelopes[start : start + 1000] for r in plan_deliveries(e, index)])
			if args.store == "mariadb":
				store.commit()
		started = time.perf_counter()
		if args.processes == 1:
			run_worker(url, secret, args.threads, args.batch, store)
		else:
			# Workers scale out by process, each on its own connection to the shared queue.
			def child() -> None:
				run_worker(
					url,
					secret,
					args.threads,
					args.batch,
					SqlDeliveryStore(connect_db, table=store.table, sequence=store.sequence),
				)

			processes = [
				multiprocessing.get_context("fork").Process(target=child) for _ in range(args.processes)
			]
			for process in processes:
				process.start()
			for process in processes:
				process.join()
		elapsed = time.perf_counter() - started
		counts = store.status_counts()
		store.close()
	return len(envelopes) / elapsed, counts


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--deliveries", type=int, default=3000)
	parser.add_argument("--threads", type=int, default=8)
	parser.add_argument("--batch", type=int, default=200)
	parser.add_argument("--store", choices=["memory", "mariadb"], default="memory")
	parser.add_argument(
		"--processes", type=int, default=1, help="worker processes (more than 1 needs mariadb)"
	)
	args = parser.parse_args()
	if args.processes > 1:
		args.store = "mariadb"
	receiver, url = start_ok_receiver("/webhook")
	try:
		envelopes = [
			make_envelope("Sales Invoice", f"SINV-{n}", "submitted", grand_total=n)
			for n in range(args.deliveries)
		]
		bodies = [e.to_json().encode() for e in envelopes]
		baseline_rate(url, bodies[:200], args.threads)  # warm the receiver's threads and sockets
		bare = baseline_rate(url, bodies, args.threads)
		ours, counts = fabric_rate(url, envelopes, args)
	finally:
		receiver.terminate()
		receiver.wait()
	print(
		f"deliveries: {args.deliveries}, threads: {args.threads}, batch: {args.batch}, store: {args.store}, "
		f"worker processes: {args.processes}"
	)
	print(f"bare requests.Session (no signing, no tracking): {bare:,.0f} requests/s")
	print(f"fabric delivery worker (signed, checked, tracked): {ours:,.0f} deliveries/s  {counts}")
	print(
		f"ratio fabric/bare: {ours / bare:.0%}; target >= 500 deliveries/s: {'met' if ours >= 500 else 'NOT met'}"
	)


if __name__ == "__main__":
	main()
