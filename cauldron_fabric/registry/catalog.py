"""The event catalog of the source document, installed as version-1 schemas with the app.

Runs after install and after every migrate and is idempotent: a catalog schema already
registered under its subject (as any version) is left alone, so an admin's later versions
stay the latest. When an app upgrade ships a changed catalog schema it is registered as the
subject's next version, under the subject's compatibility mode like any other registration;
a change that mode refuses is reported and skipped, never forced.
"""

from __future__ import annotations

import click
import frappe

from cauldron_fabric.core.schema import load_catalog, schema_fingerprint
from cauldron_fabric.registry import subjects, versions
from cauldron_fabric.registry.errors import RegistryError


def install_catalog() -> dict[str, int]:
	"""Registers every catalog event type's schema that is not registered yet; returns the counts."""
	counts = {"registered": 0, "unchanged": 0, "refused": 0}
	for entry in load_catalog():
		subjects.ensure_subject(entry.type, subjects.CATALOG)
		fingerprint = schema_fingerprint(entry.schema)
		if frappe.db.exists(versions.SCHEMA, {"subject": entry.type, "fingerprint": fingerprint}):
			counts["unchanged"] += 1
			continue
		savepoint = "fabric_install_catalog"
		frappe.db.savepoint(savepoint)
		try:
			versions.register_schema(
				entry.type,
				entry.schema,
				origin=subjects.CATALOG,
				owner_team=entry.owner_title,
				description=entry.description,
				examples=entry.examples,
			)
		except RegistryError as exc:
			frappe.db.rollback(save_point=savepoint)
			click.secho(f"Event catalog: {entry.type} was not updated: {exc}", fg="yellow", err=True)
			counts["refused"] += 1
			continue
		frappe.db.release_savepoint(savepoint)
		counts["registered"] += 1
	return counts


def sync_registry() -> None:
	"""Installs the catalog and brings derived schemas up to date (after install and migrate)."""
	from cauldron_fabric.registry.doctypes import refresh_all_derived

	counts = install_catalog()
	added = refresh_all_derived()
	if counts["registered"] or added:
		click.echo(
			f"Event schemas: {counts['registered']} catalog schema(s) and {added} DocType schema "
			"version(s) registered."
		)
