"""``bench --site SITE fabric consume``: long-running consumers of a group, one per process.

With ``--concurrency N`` the command forks N consumer processes in the same group (Kafka splits
the partitions between them, RabbitMQ hands each a share of the queue) and restarts any that
dies, after printing why, with a delay that doubles while restarts keep failing (up to a minute)
and never past ``--seconds``. SIGTERM (or SIGINT) reaches every consumer: each finishes the
event in hand, commits and leaves the group, then the command exits 0.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable

import click
from frappe.commands import get_site, pass_context

from cauldron_fabric.core.supervision import RESTART_BACKOFF, STEADY_SECONDS
from cauldron_fabric.services.all_sites import all_sites_requested, forwarded, supervise_all_sites
from cauldron_fabric.services.cli import SECONDS, connect_site, not_blank

Child = Callable[[list[int]], int]


def _split(value: str | None) -> list[str]:
	return [part.strip() for part in (value or "").split(",") if part.strip()]


def _consume_in_this_process(site: str, options: dict, stopping: list[int]) -> int:
	import frappe

	from cauldron_fabric.consume.runner import run_consumer_for
	from cauldron_fabric.core.errors import ConfigurationError

	try:
		connect_site(site)
	except click.ClickException as exc:
		click.echo(f"fabric consumer: {exc.format_message()}", err=True)
		return 2  # refused: a supervisor's restart would meet the same refusal
	try:
		totals = run_consumer_for(
			should_stop=lambda: bool(stopping),
			on_start=lambda: click.echo(f"fabric consumer {os.getpid()} for {site} started", err=True),
			on_outage=lambda exc: click.echo(
				f"fabric consumer {os.getpid()} for {site} waits for its broker: {exc}", err=True
			),
			**options,
		)
		click.echo(f"fabric consumer {os.getpid()} stopped: {totals}", err=True)
		return 0
	except ConfigurationError as exc:
		click.echo(f"fabric consumer: {exc}", err=True)
		return 2
	finally:
		frappe.destroy()


def _has_bus(broker: str | None) -> bool:
	"""Tells whether this site has a bus to consume from (--site all starts no consumer otherwise)."""
	from cauldron_fabric.consume.settings import load_consumer_settings
	from cauldron_fabric.core.errors import ConfigurationError

	try:
		load_consumer_settings(broker)
	except ConfigurationError:
		return False
	return True


def _fork(child: Child) -> int:
	"""Runs ``child(stopping)`` in a new process; returns its pid. The child exits with its code."""
	pid = os.fork()
	if pid:
		return pid
	stopping: list[int] = []
	for sig in (signal.SIGTERM, signal.SIGINT):
		signal.signal(sig, lambda number, _frame: stopping.append(number))
	code = 1
	try:
		code = child(stopping)
	except BaseException:
		traceback.print_exc()  # why this consumer died, on the command's stderr
	finally:
		sys.stderr.flush()
		os._exit(code)


def _supervise(
	child_for: Callable[[float | None], Child], concurrency: int, stopping: list[int], seconds: float | None
) -> int:
	"""Keeps ``concurrency`` children running until told to stop or out of time; returns the exit code.

	``child_for(remaining)`` gives a child that runs for at most ``remaining`` seconds (None:
	until stopped). A child that dies is started again after a delay that doubles with each
	failure in a row, so a consumer that cannot start does not spin.
	"""
	deadline = None if seconds is None else time.monotonic() + seconds
	children: dict[int, float] = {}  # pid -> when it started
	restarts: list[float] = []  # when to start a replacement
	failures_in_a_row = 0
	failed = refused = False

	def remaining() -> float | None:
		return None if deadline is None else deadline - time.monotonic()

	def start() -> None:
		children[_fork(child_for(remaining()))] = time.monotonic()

	for _ in range(concurrency):
		start()
	while children or restarts:
		left = remaining()
		if stopping or (left is not None and left <= 0):
			restarts.clear()
		if stopping:
			for pid in children:
				try:
					os.kill(pid, signal.SIGTERM)
				except ProcessLookupError:
					pass
		now = time.monotonic()
		for due in [due for due in restarts if due <= now]:
			restarts.remove(due)
			start()
		pid, status = os.waitpid(-1, os.WNOHANG) if children else (0, 0)
		if not pid:
			time.sleep(0.2)
			continue
		ran = time.monotonic() - children.pop(pid)
		code = os.waitstatus_to_exitcode(status)
		if stopping or code == 0:
			failed = failed or code != 0  # stopped, or its --seconds are over
		elif code == 2:
			click.echo("fabric consume: a consumer refused its settings; stopping", err=True)
			stopping.append(signal.SIGTERM)
			failed = refused = True
		else:
			failures_in_a_row = 1 if ran >= STEADY_SECONDS else failures_in_a_row + 1
			# As --site all restarts a site's process: afresh once a consumer ran STEADY_SECONDS.
			delay = RESTART_BACKOFF.delay(failures_in_a_row)
			left = remaining()
			if left is not None and left <= delay:
				click.echo(f"fabric consume: consumer {pid} exited ({code}); out of time", err=True)
				failed = True
				continue
			click.echo(
				f"fabric consume: consumer {pid} exited ({code}); starting another in {delay:.2g} s", err=True
			)
			restarts.append(time.monotonic() + delay)
	# Refused settings exit 2 as one consumer does: a supervisor told not to restart on 2 holds.
	return 2 if refused else 1 if failed else 0


def _topics(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
	"""Splits ``--topics``; refuses a value that names none (``''``, ``','``) instead of ignoring it."""
	topics = _split(value)
	if value is not None and not topics:
		raise click.BadParameter(
			f"{value!r} names no topic. Pass names separated by commas, such as "
			"cauldron.agent,cauldron.synapse, or leave --topics out for the handlers' topics."
		)
	return topics


def _pattern(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
	"""Refuses an empty ``--pattern``, and one Python cannot compile at all (too large, too deep).

	A pattern that is merely not a regex is left to the consumer: on RabbitMQ it is a binding key.
	"""
	not_blank(ctx, param, value)
	if value is not None:
		try:
			re.compile(value)
		except re.error:
			pass
		except (OverflowError, RecursionError) as exc:
			raise click.BadParameter(
				f"cannot be compiled ({exc}). Pass a shorter regex such as '^cauldron\\..*', or --topics."
			) from None
	return value


@click.command("consume")
@click.option("--group", callback=not_blank, help="Consumer group (default: Fabric Settings).")
@click.option(
	"--topics",
	callback=_topics,
	help="Comma-separated Kafka topics, or RabbitMQ binding keys (default: from the handlers).",
)
@click.option(
	"--pattern",
	callback=_pattern,
	help="A Kafka topic regex such as '^cauldron\\..*' (RabbitMQ: one binding key).",
)
@click.option(
	"--concurrency", type=click.IntRange(1, 64), default=1, show_default=True, help="Consumer processes."
)
@click.option(
	"--broker", type=click.Choice(["kafka", "rabbitmq"]), help="When both are configured (default: kafka)."
)
@click.option(
	"--seconds", type=SECONDS, help="Stop after this many seconds, more than 0 (default: run until SIGTERM)."
)
@pass_context
def consume(
	context,
	group: str | None = None,
	topics: list[str] | None = None,
	pattern: str | None = None,
	concurrency: int = 1,
	broker: str | None = None,
	seconds: float | None = None,
) -> None:
	"""Runs the registered handlers on consumed events; SIGTERM finishes the event in hand, then stops.

	With --site all: one such command for every site with the app, its options passed on.
	"""
	if topics and pattern:
		raise click.UsageError("Pass --topics or --pattern, not both.")
	if all_sites_requested():
		from cauldron_fabric.services.signals import stop_requested

		options = forwarded(group=group, topics=topics, pattern=pattern, broker=broker)
		arguments = ["consume", "--concurrency", str(concurrency), *options]
		supervise_all_sites(arguments, stop_requested(), seconds, lambda: _has_bus(broker))
		return
	site = get_site(context)
	options = {
		"group": group,
		"topics": topics or [],
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

		def child_for(remaining: float | None) -> Child:
			child_options = {**options, "max_seconds": remaining}
			return lambda child_stopping: _consume_in_this_process(site, child_options, child_stopping)

		code = _supervise(child_for, concurrency, stopping, seconds)
	if code:
		raise SystemExit(code)
