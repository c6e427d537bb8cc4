"""The ceiling of a MariaDB outbox relay on this machine, next to the raw producer and ours.

The "ceiling" relay is deliberately incomplete: it reads batches by primary key without row
locks (unsafe with several relays), never checks per-document order against other relays
or retries, records no per-event partition or offset, and marks a whole batch published
with one range UPDATE on a second connection while the next batch is produced. It is what
is left of a relay once everything that makes ours safe is taken away: reading each event
from the database and writing its outcome back. Its rate next to the raw producer's shows
how much of the gap between them the database round trips alone account for.

Run: .venv/bin/python tests/benchmarks/bench_relay_ceiling.py
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from bench_relay_throughput import (  # noqa: E402
	bench_arguments,
	bench_envelopes,
	filled_outbox,
	raw_producer_rate,
	relay_rate,
	warm_producer,
)

from cauldron_fabric.core.cloudevents import kafka_headers  # noqa: E402
from cauldron_fabric.core.envelope import fast_loads  # noqa: E402
from cauldron_fabric.testing.kafka_broker import KafkaBroker  # noqa: E402
from conftest import connect_db  # noqa: E402


def read_committed(conn):
	with conn.cursor() as cur:
		cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
	return conn


def ceiling_rate(bootstrap: str, envelopes, topic: str, table: str, sequence: str, batch: int) -> float:
	with filled_outbox(envelopes, table, sequence):
		return drain_without_safety(bootstrap, len(envelopes), topic, table, batch)


def drain_without_safety(bootstrap: str, count: int, topic: str, table: str, batch: int) -> float:
	"""Publishes ``count`` outbox rows the ceiling's way (see the module docstring); returns events/s."""
	producer = warm_producer(bootstrap, topic)
	reader, writer = read_committed(connect_db()), read_committed(connect_db())
	settler = ThreadPoolExecutor(1)

	def mark_published(first: int, last: int) -> None:
		with writer.cursor() as cur:
			cur.execute(
				f"UPDATE `{table}` SET status = 'Published', attempts = attempts + 1, "
				"published_at = NOW(), topic = %s WHERE name BETWEEN %s AND %s",
				(topic, first, last),
			)
		writer.commit()

	def wait_for(unacknowledged: list[int]) -> None:
		while unacknowledged[0]:
			producer.poll(0.01)

	started = time.perf_counter()
	after, sent, previous, settling = 0, 0, None, None
	while sent < count:
		with reader.cursor() as cur:
			cur.execute(
				f"SELECT name, partition_key, envelope FROM `{table}` WHERE name > %s ORDER BY name LIMIT %s",
				(after, batch),
			)
			rows = cur.fetchall()
		reader.commit()
		unacknowledged = [len(rows)]

		def acknowledged(err, msg, counter=unacknowledged):
			counter[0] -= 1

		for _, key, body in rows:
			headers = list(kafka_headers(fast_loads(body)))
			producer.produce(topic, body.encode(), key.encode(), headers=headers, on_delivery=acknowledged)
			producer.poll(0)
		if previous is not None:
			wait_for(previous[0])
			if settling is not None:
				settling.result()
			settling = settler.submit(mark_published, previous[1], previous[2])
		previous = (unacknowledged, rows[0][0], rows[-1][0])
		after, sent = rows[-1][0], sent + len(rows)
	wait_for(previous[0])
	if settling is not None:
		settling.result()
	mark_published(previous[1], previous[2])
	elapsed = time.perf_counter() - started
	settler.shutdown()
	for conn in (reader, writer):
		conn.close()
	return count / elapsed


def main() -> None:
	args = bench_arguments(__doc__, batch=2000)
	envelopes = bench_envelopes(args.events)
	raw, ceiling, ours = [], [], []
	with KafkaBroker() as broker:
		for round_ in range(args.rounds):
			raw.append(raw_producer_rate(broker.bootstrap, envelopes, f"ceiling.raw.{round_}"))
			ceiling.append(
				ceiling_rate(
					broker.bootstrap, envelopes, f"ceiling.top.{round_}", f"ceiling_top_{round_}",
					f"ceiling_top_seq_{round_}", args.batch,
				)
			)  # fmt: skip
			ours.append(
				relay_rate(
					broker.bootstrap, envelopes, f"ceiling.ours.{round_}", f"ceiling_ours_{round_}",
					f"ceiling_ours_seq_{round_}", args.batch,
				)
			)  # fmt: skip
			print(
				f"round {round_ + 1}: raw {raw[-1]:,.0f}/s, ceiling relay {ceiling[-1]:,.0f}/s, "
				f"our relay {ours[-1]:,.0f}/s"
			)
	best_raw = max(raw)
	print(f"best raw producer:   {best_raw:,.0f} events/s")
	print(f"best ceiling relay:  {max(ceiling):,.0f} events/s  ratio {max(ceiling) / best_raw:.2f}")
	print(f"best relay (ours):   {max(ours):,.0f} events/s  ratio {max(ours) / best_raw:.2f}")


if __name__ == "__main__":
	main()
