"""``bench --site SITE fabric codegen --out DIR``: typed events for the other Cauldron modules."""

from __future__ import annotations

import os

import click
from frappe.commands import get_site, pass_context

from cauldron_fabric.services.all_sites import all_sites_requested
from cauldron_fabric.services.cli import connect_site, not_blank


@click.command("codegen")
@click.option(
	"--out",
	"out",
	required=True,
	callback=not_blank,
	type=click.Path(file_okay=False, writable=True),
	help="Directory to write cauldron_events.py and cauldron_events.ts into (created if missing; "
	"a relative path is taken from the bench's sites folder).",
)
@click.option(
	"--subject",
	"patterns",
	multiple=True,
	callback=not_blank,
	help="Only event types matching this glob, e.g. 'agent.*' (* matches dots too; "
	"repeat for more; default: all).",
)
@pass_context
def codegen(context, out: str, patterns: tuple[str, ...] = ()) -> None:
	"""Writes Python TypedDicts and TypeScript types for the latest version of every event type."""
	import frappe

	from cauldron_fabric.core.schema import write_sources
	from cauldron_fabric.registry.documentation import codegen_schemas

	if all_sites_requested():
		raise click.UsageError(
			"codegen writes the types of one site's schema registry: pass that site with --site, not all."
		)
	connect_site(get_site(context))
	try:
		schemas = codegen_schemas(patterns)
		if not schemas:
			raise click.ClickException(
				"No registered event type matches "
				+ (", ".join(patterns) if patterns else "(the registry is empty: run bench migrate)")
				+ "."
			)
		folder = os.path.abspath(out)
		try:
			written = write_sources(schemas, folder)
		except OSError as exc:
			raise click.ClickException(
				f"Cannot write the types into {folder}: {exc.strerror or exc}"
				+ (f" ({exc.filename})" if exc.filename else "")
				+ ". Pass --out a directory you can write to (it is created if missing)."
			) from None
		for path in written:
			click.echo(f"wrote {path} ({len(schemas)} event types)")
	finally:
		frappe.destroy()
