"""Stored schema versions: a registry ``$id`` names the version itself, fingerprints leave it out.

Before, a schema was stored with the ``$id`` it was sent with: a catalog schema edited in an
app upgrade became version 2 of its subject still saying ``urn:cauldron:schema:<type>:1``.
Fingerprints now leave that ``$id`` out (the same schema under another version's ``$id`` is the
same content); stored ones are brought to the new rule, or the catalog would register every
edited schema again at the next migrate.
"""

import json

import frappe

from cauldron_fabric.core.schema import schema_fingerprint, with_registry_id
from cauldron_fabric.registry.cache import schemas_changed
from cauldron_fabric.registry.parsing import pretty
from cauldron_fabric.registry.versions import SCHEMA


def execute() -> None:
	rows = frappe.db.sql(
		f"SELECT name, json_schema, data_schema, fingerprint FROM `tab{SCHEMA}`", as_dict=True
	)
	changed = False
	for row in rows:
		schema = json.loads(row.json_schema)
		named = with_registry_id(schema, row.data_schema) if row.data_schema else schema
		values = {"fingerprint": schema_fingerprint(named)}
		if named != schema:
			values["json_schema"] = pretty(named)
		if values["fingerprint"] != row.fingerprint or named != schema:
			frappe.db.set_value(SCHEMA, row.name, values, update_modified=False)
			changed = True
	if changed:
		schemas_changed()
