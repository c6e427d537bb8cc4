"""``bench --site SITE fabric deliver``: the long-running delivery worker."""

from __future__ import annotations

import click
from frappe.commands import get_site, pass_context

from cauldron_fabric.services.all_sites import all_sites_requested, forwarded, supervise_all_sites
from cauldron_fabric.services.cli import SECONDS, connect_site


@click.command("deliver")
@click.option(
	"--batch-size",
	type=click.IntRange(1, 5000),
	help="Deliveries per batch, 1-5000 (default: Fabric Settings).",
)
@click.option(
	"--seconds", type=SECONDS, help="Stop after this many seconds, more than 0 (default: run until SIGTERM)."
)
@pass_context
def deliver(context, batch_size: int | None = None, seconds: float | None = None) -> None:
	"""Delivers events to subscriptions moments after commit; SIGTERM finishes the batch in hand, then stops.

	With --site all: one delivery worker process for every site with the app.
	"""
	import frappe

	from cauldron_fabric.delivery.worker import run_delivery_worker
	from cauldron_fabric.services.signals import stop_requested

	stopping = stop_requested()
	if all_sites_requested():
		# A site with no enabled subscription has nothing to deliver: it gets a worker once it has one.
		has_subscriptions = lambda: bool(frappe.db.exists("Event Subscription", {"enabled": 1}))  # noqa: E731
		supervise_all_sites(
			["deliver", *forwarded(batch_size=batch_size)], stopping, seconds, has_subscriptions
		)
		return
	connect_site(get_site(context))
	try:
		click.echo(f"fabric delivery worker for {frappe.local.site} started", err=True)
		run_delivery_worker(stopping, max_seconds=seconds, batch_size=batch_size)
		click.echo(f"fabric delivery worker for {frappe.local.site} stopped", err=True)
	finally:
		frappe.destroy()
