"""``bench --site SITE fabric …``: the long-running relay and a status report."""

from __future__ import annotations

import gc
import importlib
import json

import click
from frappe.commands import get_site, pass_context

from cauldron_fabric.emit.watch import watch_writes
from cauldron_fabric.services.all_sites import (
	all_sites_requested,
	each_site_with_app,
	forwarded,
	supervise_all_sites,
)
from cauldron_fabric.services.cli import SECONDS, connect_site

# bench imports this module in the process of every command, before the command runs (to list
# the app's commands): `bench execute`, `bench console` and `bench run-patch` run none of the
# hooks that wrap Frappe's writes elsewhere, and their first write may come before any document
# hook of the fabric. Wrapped here, before the subcommands' imports, which may fail alone.
watch_writes()


@click.group("fabric")
def fabric() -> None:
	"""Cauldron Fabric: relay, deliver and consume events; status and typed-event codegen."""


@fabric.command("relay")
@click.option(
	"--batch-size",
	type=click.IntRange(1, 10000),
	help="Events per batch, 1-10000 (default: Fabric Settings).",
)
@click.option(
	"--seconds", type=SECONDS, help="Stop after this many seconds, more than 0 (default: run until SIGTERM)."
)
@pass_context
def relay(context, batch_size: int | None = None, seconds: float | None = None) -> None:
	"""Publishes committed events within milliseconds; SIGTERM finishes the batch in hand, then stops.

	With --site all: one relay process for every site with the app, following sites as they come and go.
	"""
	import frappe

	from cauldron_fabric.services.relay import run_relay_for
	from cauldron_fabric.services.signals import stop_requested

	stopping = stop_requested()
	if all_sites_requested():
		from cauldron_fabric.services.relay import load_relay_settings

		# A site that publishes to no broker records only: it gets a relay once one is set.
		has_broker = lambda: load_relay_settings() is not None  # noqa: E731
		supervise_all_sites(["relay", *forwarded(batch_size=batch_size)], stopping, seconds, has_broker)
		return
	connect_site(get_site(context))
	# Frappe's start-up objects live as long as the process; frozen, the garbage collector
	# stops walking them on every collection the relay's batches trigger.
	gc.freeze()
	try:
		click.echo(f"fabric relay for {frappe.local.site} started", err=True)
		run_relay_for(
			stopping, max_seconds=seconds, batch_size=batch_size, say=lambda text: click.echo(text, err=True)
		)
		click.echo(f"fabric relay for {frappe.local.site} stopped", err=True)
	finally:
		frappe.destroy()


@fabric.command("status")
@pass_context
def status(context) -> None:
	"""Prints the outbox and delivery queue depths and the relays' and delivery workers' heartbeats as JSON.

	With --site all: one such report for every site with the app, by site name.
	"""
	import frappe

	from cauldron_fabric.services.status import site_status

	if all_sites_requested():
		click.echo(json.dumps(each_site_with_app(site_status), indent=2, default=str))
		return
	connect_site(get_site(context))
	try:
		click.echo(json.dumps(site_status(), indent=2, default=str))
	finally:
		frappe.destroy()


fabric.add_command(importlib.import_module("cauldron_fabric.delivery.cli").deliver)
fabric.add_command(importlib.import_module("cauldron_fabric.registry.cli").codegen)
fabric.add_command(importlib.import_module("cauldron_fabric.consume.cli").consume)
commands = [fabric]
