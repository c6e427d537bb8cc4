"""What MariaDB spends per row on the relay's settling UPDATE, and why: variants side by side.

The relay's settle marks each published row (status, published time, attempt, topic,
partition, offset). profile_relay_cpu.py shows the MariaDB server as the largest CPU share of
a relayed event; this script takes the settle statement apart on the throughput benchmark's
outbox (same ~1 KB envelopes, batches of 2,000), each variant on a fresh table:

* the relay's own statement (SqlOutboxStore.settle);
* range UPDATEs of one column each: ``attempts`` (fixed width, in place), ``status`` to a
  value as long as ``Pending``, shorter, and longer (``Published``, what the relay writes);
* ``status`` to ``Published`` while another column shrinks by as much, and without the status
  index.

What it shows on a 2-core VM: an UPDATE that makes a ~1 KB row longer costs InnoDB about twice
one that keeps its length or shortens it, index or not (the longer record cannot take the old
one's place in its full page, which is rewritten). Every settle lengthens its row (``Published``
is longer than ``Pending``; ``published_at`` and ``topic`` go from NULL to a value).

Run: .venv/bin/python tests/benchmarks/profile_settle_rows.py
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from bench_relay_throughput import bench_envelopes, filled_outbox  # noqa: E402
from profile_relay_cpu import mariadb_pid, process_cpu  # noqa: E402

from cauldron_fabric.core.outbox.sql import SqlOutboxStore  # noqa: E402
from cauldron_fabric.core.ports import Settlement  # noqa: E402
from conftest import connect_db  # noqa: E402

TABLE, SEQUENCE = "fabric_bench_settle", "fabric_bench_settle_seq"
EVENTS, BATCH = 20000, 2000


@contextmanager
def spent():
	"""Adds the MariaDB server's CPU time and the wall time inside to SPENT."""
	cpu, wall = process_cpu(SERVER), time.perf_counter()
	yield
	SPENT[0] += process_cpu(SERVER) - cpu
	SPENT[1] += time.perf_counter() - wall


def relays_settle(conn, store: SqlOutboxStore) -> None:
	"""Claims and settles every row as the relay does (the claims are left out)."""
	for _ in range(EVENTS // BATCH):
		records = store.claim(BATCH)
		settlements = [
			Settlement(r.seq, True, destination="cauldron.sales", partition=0, offset=n)
			for n, r in enumerate(records)
		]
		with spent():
			store.settle(settlements)


def range_update(assignments: str, before: str | None = None):
	"""Returns a variant that sets ``assignments`` on each batch's id range (``before`` runs first)."""

	def variant(conn, store: SqlOutboxStore) -> None:
		with conn.cursor() as cur:
			if before:
				cur.execute(before)
			cur.execute(f"SELECT MIN(name) FROM `{TABLE}`")
			(first,) = cur.fetchone()
			for start in range(first, first + EVENTS, BATCH):
				with spent():
					cur.execute(
						f"UPDATE `{TABLE}` SET {assignments} WHERE name BETWEEN %s AND %s",
						(start, start + BATCH - 1),
					)
					conn.commit()

	return variant


VARIANTS = {
	"the relay's settle (SqlOutboxStore.settle)": relays_settle,
	"attempts + 1 (fixed width)": range_update("attempts = attempts + 1"),
	"status 'Pending' -> 'Pendinx' (same length)": range_update("status = 'Pendinx'"),
	"status 'Pending' -> 'Sent' (shorter)": range_update("status = 'Sent'"),
	"status 'Pending' -> 'Published' (longer)": range_update("status = 'Published'"),
	"status -> 'Published', owner -> NULL (same length)": range_update("status = 'Published', owner = NULL"),
	"status -> 'Published', no status index": range_update(
		"status = 'Published'", before=f"DROP INDEX fabric_status_seq ON `{TABLE}`"
	),
}
SERVER = mariadb_pid()
SPENT = [0.0, 0.0]  # the server's CPU seconds and the wall seconds, in the statements timed


def main() -> None:
	if SERVER is None:
		raise SystemExit("no MariaDB server runs on this machine: its CPU cannot be read")
	envelopes = bench_envelopes(EVENTS)
	print(f"{EVENTS} rows of ~{len(envelopes[0].to_json())} bytes, batches of {BATCH}; MariaDB CPU per row")
	for label, variant in VARIANTS.items():
		with filled_outbox(envelopes, TABLE, SEQUENCE):
			conn = connect_db()
			store = SqlOutboxStore(connect_db, table=TABLE, sequence=SEQUENCE)
			SPENT[:] = [0.0, 0.0]
			variant(conn, store)
			store.close()
			conn.close()
		cpu, wall = (seconds / EVENTS * 1e6 for seconds in SPENT)
		print(f"  {label:52s} {cpu:5.1f} us  (wall {wall:5.1f} us)")


if __name__ == "__main__":
	main()
