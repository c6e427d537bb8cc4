"""``bench --site SITE fabric consume``: long-running consumers of a group, one per process.

With ``--concurrency N`` the command forks N consumer processes in the same group (Kafka splits
the partitions between them, RabbitMQ hands each a share of the queue) and restarts any that
dies. SIGTERM (or SIGINT) reaches every consumer: each finishes the event in hand, commits and
leaves the group, then the command exits 0.
"""

from __future__ import annotations

import os
import signal
import time

import click
from frappe.commands import get_site, pass_context

RESTART_DELAY = 2.0


def _split(value: str | None) -> list[str]:
	return [part.strip() for part in (value or "").split(",") if part.strip()]


def _consume_in_this_process(site: str, options: dict, stopping: list[int]) -> int:
	import frappe

	from cauldron_fabric.consume.runner import run_consumer_for
	from cauldron_fabric.core.errors import ConfigurationError

	frappe.init(site=site)
	frappe.connect()
	try:
		click.echo(f"fabric consumer {os.getpid()} for {site} started", err=True)
		totals = run_consumer_for(should_stop=lambda: bool(stopping), **options)
		click.echo(f"fabric consumer {os.getpid()} stopped: {totals}", err=True)
		return 0
	except ConfigurationError as exc:
		click.echo(f"fabric consumer: {exc}", err=True)
		return 2
	finally:
		frappe.destroy()


def _fork(site: str, options: dict) -> int:
	pid = os.fork()
	if pid:
		return pid
	stopping: list[int] = []
	for sig in (signal.SIGTERM, signal.SIGINT):
		signal.signal(sig, lambda number, _frame: stopping.append(number))
	code = 1
	try:
		code = _consume_in_this_process(site, options, stopping)
	finally:
		os._exit(code)


def _supervise(site: str, options: dict, concurrency: int, stopping: list[int]) -> int:
	"""Keeps ``concurrency`` consumer processes running until told to stop; returns the exit code."""
	children = {_fork(site, options) for _ in range(concurrency)}
	failed = False
	while children:
		if stopping:
			for pid in children:
				try:
					os.kill(pid, signal.SIGTERM)
				except ProcessLookupError:
					pass
		pid, status = os.waitpid(-1, os.WNOHANG)
		if not pid:
			time.sleep(0.2)
			continue
		children.discard(pid)
		code = os.waitstatus_to_exitcode(status)
		if stopping or code == 0:
			failed = failed or code != 0  # stopped, or its --seconds are over
		elif code == 2:
			click.echo("fabric consume: a consumer refused its settings; stopping", err=True)
			stopping.append(signal.SIGTERM)
			failed = True
		else:
			click.echo(f"fabric consume: consumer {pid} exited ({code}); starting another", err=True)
			time.sleep(RESTART_DELAY)
			children.add(_fork(site, options))
	return 1 if failed else 0


@click.command("consume")
@click.option("--group", help="Consumer group (default: Fabric Settings).")
@click.option(
	"--topics", help="Comma-separated Kafka topics, or RabbitMQ binding keys (default: from the handlers)."
)
@click.option("--pattern", help="A Kafka topic regex such as '^cauldron\\..*' (RabbitMQ: one binding key).")
@click.option(
	"--concurrency", type=click.IntRange(1, 64), default=1, show_default=True, help="Consumer processes."
)
@click.option(
	"--broker", type=click.Choice(["kafka", "rabbitmq"]), help="When both are configured (default: kafka)."
)
@click.option("--seconds", type=float, help="Stop after this many seconds (default: run until SIGTERM).")
@pass_context
def consume(
	context,
	group: str | None = None,
	topics: str | None = None,
	pattern: str | None = None,
	concurrency: int = 1,
	broker: str | None = None,
	seconds: float | None = None,
) -> None:
	"""Runs the registered handlers on consumed events; SIGTERM finishes the event in hand, then stops."""
	if topics and pattern:
		raise click.UsageError("Pass --topics or --pattern, not both.")
	site = get_site(context)
	options = {
		"group": group,
		"topics": _split(topics),
		"pattern": pattern,
		"broker": broker,
		"max_seconds": seconds,
	}
	stopping: list[int] = []
	for sig in (signal.SIGTERM, signal.SIGINT):
		signal.signal(sig, lambda number, _frame: stopping.append(number))
	if concurrency == 1:
		code = _consume_in_this_process(site, options, stopping)
	else:
		code = _supervise(site, options, concurrency, stopping)
	if code:
		raise SystemExit(code)
