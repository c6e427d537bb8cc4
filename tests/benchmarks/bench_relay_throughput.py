"""Relay throughput: events/s from a MariaDB outbox to Kafka, against the raw producer.

Both sides publish the same number of same-sized messages to the same broker, with the same
producer settings (idempotent, acks=all); the raw side skips the outbox entirely. Each side's
producer first has one message acknowledged (connection, producer id and topic metadata in
place), and the relay's database sessions are connected, so both are timed in their steady
state rather than on first handshakes (a PyMySQL connection builds a TLS context, tens of
milliseconds, even when the server has TLS off).
Target: the relay reaches at least 50% of the raw producer's rate.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from confluent_kafka import Producer  # noqa: E402

from cauldron_fabric.core.cloudevents import kafka_headers  # noqa: E402
from cauldron_fabric.core.outbox.sql import SqlOutboxStore  # noqa: E402
from cauldron_fabric.core.outbox.statements import create_table_sql  # noqa: E402
from cauldron_fabric.core.ports import OutboundMessage, OutboxAppend  # noqa: E402
from cauldron_fabric.core.relay import Relay, RelayOptions  # noqa: E402
from cauldron_fabric.core.transports import open_transport  # noqa: E402
from cauldron_fabric.testing.kafka_broker import KafkaBroker  # noqa: E402
from conftest import DB_NAME, connect_db, make_envelope  # noqa: E402


def warm_producer(bootstrap: str, topic: str) -> Producer:
	"""Returns a producer with the relay's settings that has had one message acknowledged."""
	producer = Producer(
		{"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
	)
	producer.produce(topic, b"{}", b"warm-up")
	producer.flush(30)
	return producer


def raw_producer_rate(bootstrap: str, envelopes, topic: str) -> float:
	producer = warm_producer(bootstrap, topic)
	started = time.perf_counter()
	for envelope in envelopes:
		while True:
			try:
				producer.produce(
					topic,
					envelope.to_json().encode(),
					envelope.partition_key.encode(),
					headers=list(kafka_headers(envelope)),
				)
				break
			except BufferError:
				producer.poll(0.05)
		producer.poll(0)
	producer.flush(60)
	return len(envelopes) / (time.perf_counter() - started)


@contextmanager
def filled_outbox(envelopes, table: str, sequence: str):
	"""Creates an outbox table with the relay's indexes, appends every envelope, drops it after."""
	setup = connect_db()
	with setup.cursor() as cur:
		for statement in create_table_sql(table, sequence):
			cur.execute(statement)
	setup.commit()
	store = SqlOutboxStore(connect_db, table=table, sequence=sequence)
	store.ensure_indexes()
	for start in range(0, len(envelopes), 1000):
		store.append([OutboxAppend(e) for e in envelopes[start : start + 1000]])
		store.commit()
	store.close()
	try:
		yield
	finally:
		with setup.cursor() as cur:
			cur.execute(f"DROP TABLE `{table}`")
			cur.execute(f"DROP SEQUENCE `{sequence}`")
		setup.commit()
		setup.close()


def relay_rate(bootstrap: str, envelopes, topic: str, table: str, sequence: str, batch: int) -> float:
	with filled_outbox(envelopes, table, sequence):
		store, *more = (SqlOutboxStore(connect_db, table=table, sequence=sequence) for _ in range(4))
		options = RelayOptions(batch_size=batch, topic_template=topic, idle_wait=0.01)
		published = 0

		def count(report):
			nonlocal published
			published += report.published

		relay = Relay(
			store, open_transport(f"kafka://{bootstrap}"), options, on_cycle=count, more_stores=more
		)
		relay.transport.ensure_topics({topic})
		relay.transport.publish([OutboundMessage(topic, "warm-up", b"{}", ())], 30)
		for session in relay.sessions:
			session.pending_count()  # connects: a running relay has its sessions open
		started = time.perf_counter()
		relay.run(lambda: published >= len(envelopes), max_seconds=300)
		elapsed = time.perf_counter() - started
		relay.close()
	if published != len(envelopes):
		raise SystemExit(f"relay published {published} of {len(envelopes)}")
	return published / elapsed


def bench_envelopes(count: int) -> list:
	"""Returns ``count`` ~1 KB envelopes over 500 documents (creating the test database first).

	The envelopes stay alive all run; they are frozen so that the garbage collector stops
	walking them over and over on every side measured (the relay command freezes its
	start-up objects too).
	"""
	conn = connect_db(None)
	with conn.cursor() as cur:
		cur.execute(f"CREATE DATABASE IF NOT EXISTS `{DB_NAME}`")
	conn.close()
	envelopes = [
		make_envelope("Sales Invoice", f"SINV-{i % 500}", "updated", n=i, note="x" * 600)
		for i in range(count)
	]
	gc.freeze()
	return envelopes


def bench_arguments(description: str, batch: int) -> argparse.Namespace:
	"""Parses the relay benchmarks' options: events, batch size (default ``batch``) and rounds."""
	parser = argparse.ArgumentParser(description=description)
	parser.add_argument("--events", type=int, default=20000)
	parser.add_argument("--batch", type=int, default=batch)
	parser.add_argument("--rounds", type=int, default=3)
	return parser.parse_args()


def main() -> None:
	args = bench_arguments(__doc__, batch=1000)
	envelopes = bench_envelopes(args.events)
	print(
		f"{args.events} events of ~{len(envelopes[0].to_json())} bytes, batch {args.batch}, {args.rounds} rounds"
	)
	raw, relayed = [], []
	with KafkaBroker() as broker:
		for round_ in range(args.rounds):
			raw.append(raw_producer_rate(broker.bootstrap, envelopes, f"bench.raw.{round_}"))
			relayed.append(
				relay_rate(
					broker.bootstrap,
					envelopes,
					f"bench.relay.{round_}",
					f"bench_outbox_{round_}",
					f"bench_seq_{round_}",
					args.batch,
				)
			)
			print(f"round {round_ + 1}: raw producer {raw[-1]:,.0f}/s, relay {relayed[-1]:,.0f}/s")
	best_raw, best_relay = max(raw), max(relayed)
	print(f"best raw producer: {best_raw:,.0f} events/s")
	print(f"best relay:        {best_relay:,.0f} events/s")
	print(f"ratio relay/raw:   {best_relay / best_raw:.2f} (target >= 0.50)")


if __name__ == "__main__":
	main()
