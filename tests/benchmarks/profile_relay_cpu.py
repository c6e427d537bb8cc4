"""Where the relay's CPU goes per event: each relay thread, the garbage collector, MariaDB, the broker.

Runs the throughput benchmark's relay (bench_relay_throughput: same outbox, batch and four
sessions) and reads CPU time without a profiler, which would slow the Python side several
times over and hide what waits on what:

* the main thread, the claim thread and the settle thread (time.thread_time, read on each
  thread), the whole relay process (librdkafka's threads included) and the time spent in
  garbage collection on any of them (gc.callbacks; part of those threads' time);
* the MariaDB server and the broker process (from /proc), since on a small machine they take
  their CPU from the same cores as the relay (the server's figure counts every client's
  queries: on a shared server it is only the relay's while nothing else runs);
* per stage (claim, produce, conclude, settle), wall and CPU time of the thread running it,
  timed by wrapping those methods.

The relay, the MariaDB server and the broker share the machine's cores: when their CPU per
event adds up to the cores' capacity, the relay's rate is that capacity, whichever thread of
it is busiest.

Run: .venv/bin/python tests/benchmarks/profile_relay_cpu.py --batch 2000
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from bench_relay_throughput import bench_arguments, bench_envelopes, relay_rate  # noqa: E402

from cauldron_fabric.core import relay_pipeline  # noqa: E402
from cauldron_fabric.core.outbox.sql import SqlOutboxStore  # noqa: E402
from cauldron_fabric.core.relay import Relay  # noqa: E402
from cauldron_fabric.testing.kafka_broker import KafkaBroker  # noqa: E402

# The stages timed, as (class, method).
STAGES = (
	(SqlOutboxStore, "claim"),
	(SqlOutboxStore, "settle"),
	(Relay, "_produce"),
	(Relay, "_conclude"),
)
TICKS = os.sysconf("SC_CLK_TCK")


class Meter:
	"""Collects stage timings and thread CPU times while a relay runs."""

	def __init__(self):
		self.stages: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
		self.threads: dict[str, float] = {}
		self.gc_seconds = 0.0
		self._gc_started = 0.0
		self.pids: tuple[int | None, int | None] = (None, None)  # MariaDB's, the broker's
		# CPU seconds during Relay.run: its main thread, the process, MariaDB, the broker.
		self.run_cpu = (0.0, 0.0, 0.0, 0.0)

	def wrap_run(self) -> None:
		"""Reads the CPU times around Relay.run, leaving out filling and dropping the outbox."""
		original = Relay.run

		def run(relay, *args, **kwargs):
			before = self.cpu_times()
			try:
				return original(relay, *args, **kwargs)
			finally:
				# Relay.run returns once its background threads are shut down: all counted.
				self.run_cpu = tuple(b - a for a, b in zip(before, self.cpu_times(), strict=True))

		Relay.run = run

	def cpu_times(self) -> tuple[float, float, float, float]:
		server, broker = self.pids
		return time.thread_time(), time.process_time(), process_cpu(server), process_cpu(broker)

	def wrap(self, cls, name: str) -> None:
		"""Times every call of ``cls.name``: wall and the calling thread's CPU."""
		original = getattr(cls, name)

		def timed(*args, **kwargs):
			wall, cpu = time.perf_counter(), time.thread_time()
			try:
				return original(*args, **kwargs)
			finally:
				totals = self.stages[(name, threading.current_thread().name.split("_")[0])]
				totals[0] += time.perf_counter() - wall
				totals[1] += time.thread_time() - cpu

		setattr(cls, name, timed)

	def on_gc(self, phase: str, info: dict) -> None:
		if phase == "start":
			self._gc_started = time.perf_counter()
		else:
			self.gc_seconds += time.perf_counter() - self._gc_started


def metered_pools(meter: Meter) -> None:
	"""Makes the pipeline's background threads report their CPU time when shut down."""

	class MeteredPool(relay_pipeline.ThreadPoolExecutor):
		def shutdown(self, wait: bool = True, **kwargs) -> None:
			try:
				cpu = self.submit(time.thread_time).result()
				meter.threads[self._thread_name_prefix] = meter.threads.get(self._thread_name_prefix, 0) + cpu
			except RuntimeError:  # already shut down
				pass
			super().shutdown(wait, **kwargs)

	relay_pipeline.ThreadPoolExecutor = MeteredPool


def process_cpu(pid: int | None) -> float:
	"""Returns a process's user and system CPU seconds so far (0 when it cannot be read)."""
	if pid is None:
		return 0.0
	try:
		with open(f"/proc/{pid}/stat") as stat:
			fields = stat.read().rsplit(")", 1)[1].split()
	except OSError:
		return 0.0
	return (int(fields[11]) + int(fields[12])) / TICKS


def mariadb_pid() -> int | None:
	"""Returns the local MariaDB server's process id, if one runs on this machine."""
	for entry in os.listdir("/proc"):
		if entry.isdigit():
			try:
				with open(f"/proc/{entry}/comm") as comm:
					if comm.read().strip() in ("mariadbd", "mysqld"):
						return int(entry)
			except OSError:
				continue
	return None


def profile_round(broker: KafkaBroker, envelopes, meter: Meter, round_: int, batch: int) -> None:
	"""Runs one relay round and prints where its CPU went, per event."""
	count = len(envelopes)
	meter.stages.clear()
	meter.threads.clear()
	meter.gc_seconds = 0.0
	meter.pids = (mariadb_pid(), broker.process.pid if broker.process else None)
	rate = relay_rate(
		broker.bootstrap,
		envelopes,
		f"profile.{round_}",
		f"profile_outbox_{round_}",
		f"profile_seq_{round_}",
		batch,
	)
	main, process, mariadb, broker_cpu = meter.run_cpu

	def per_event(seconds: float) -> str:
		return f"{seconds / count * 1e6:.1f} us"

	print(f"round {round_ + 1}: relay {rate:,.0f} events/s; CPU per event while it ran:")
	print(
		f"  relay process {per_event(process)} (main thread {per_event(main)}, "
		+ ", ".join(f"{name} thread {per_event(cpu)}" for name, cpu in sorted(meter.threads.items()))
		+ f", garbage collection {per_event(meter.gc_seconds)}), "
		f"MariaDB {per_event(mariadb)}, broker {per_event(broker_cpu)}"
	)
	for (name, thread), (wall, cpu) in sorted(meter.stages.items()):
		print(f"  {name:<10} on {thread:<13} wall {per_event(wall)}, CPU {per_event(cpu)}")


def main() -> None:
	args = bench_arguments(__doc__, batch=2000)
	envelopes = bench_envelopes(args.events)
	meter = Meter()
	for cls, name in STAGES:
		meter.wrap(cls, name)
	meter.wrap_run()
	metered_pools(meter)
	gc.callbacks.append(meter.on_gc)
	print(f"{args.events} events of ~{len(envelopes[0].to_json())} bytes, batch {args.batch}")
	with KafkaBroker() as broker:
		for round_ in range(args.rounds):
			profile_round(broker, envelopes, meter, round_, args.batch)


if __name__ == "__main__":
	main()
