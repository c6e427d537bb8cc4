"""``bench --site SITE fabric codegen --out DIR``: typed events for the other Cauldron modules."""

from __future__ import annotations

import click
from frappe.commands import get_site, pass_context


@click.command("codegen")
@click.option(
	"--out",
	"out",
	required=True,
	type=click.Path(file_okay=False, writable=True),
	help="Directory to write cauldron_events.py and cauldron_events.ts into (created if missing).",
)
@click.option(
	"--subject",
	"patterns",
	multiple=True,
	help="Only event types matching this pattern, e.g. 'agent.*' (repeat for more; default: all).",
)
@pass_context
def codegen(context, out: str, patterns: tuple[str, ...] = ()) -> None:
	"""Writes Python TypedDicts and TypeScript types for the latest version of every event type."""
	import frappe

	from cauldron_fabric.core.schema import write_sources
	from cauldron_fabric.registry.documentation import codegen_schemas

	frappe.init(site=get_site(context))
	frappe.connect()
	try:
		schemas = codegen_schemas(patterns)
		if not schemas:
			raise click.ClickException(
				"No registered event type matches "
				+ (", ".join(patterns) if patterns else "(the registry is empty: run bench migrate)")
				+ "."
			)
		for path in write_sources(schemas, out):
			click.echo(f"wrote {path} ({len(schemas)} event types)")
	finally:
		frappe.destroy()
