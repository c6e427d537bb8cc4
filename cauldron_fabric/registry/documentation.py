"""What the registry tells developers: the AsyncAPI document, the catalog page, generated types.

All three read the latest version of every subject, so what they show is what the fabric
checks events against. Catalog subjects keep the catalog's owner module, consumers and
direction; subjects derived from a DocType are published by the core (Frappe/ERPNext); a
registered subject is published by its owner team.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import frappe

import cauldron_fabric
from cauldron_fabric.core.naming import DEFAULT_TOPIC_TEMPLATE, topic_for
from cauldron_fabric.core.schema import CatalogEntry, asyncapi_document, catalog_entry, data_schema_uri
from cauldron_fabric.core.schema.catalog import MODULES
from cauldron_fabric.registry import subjects

LATEST_VERSIONS = """
	SELECT s.name AS subject, s.origin, s.reference_doctype, s.compatibility, e.name AS id,
		e.version, e.json_schema, e.owner_team, e.owner_user, e.description, e.examples,
		e.status, e.replaced_by, r.title AS replaced_by_title
	FROM `tabEvent Subject` s
	JOIN `tabEvent Schema` e ON e.subject = s.name AND e.version = s.latest_version
	LEFT JOIN `tabEvent Schema` r ON r.name = e.replaced_by
	ORDER BY s.name
"""


def latest_rows() -> list[dict[str, Any]]:
	"""Returns the latest version of every subject with its subject's settings, sorted by subject."""
	rows = frappe.db.sql(LATEST_VERSIONS, as_dict=True)
	for row in rows:
		row["schema"] = json.loads(row.pop("json_schema"))
		row["examples"] = json.loads(row.examples) if row.examples else []
	return rows


def catalog_entries(rows: list[dict[str, Any]] | None = None) -> list[CatalogEntry]:
	"""Returns the registry's latest versions as catalog entries (owner, direction, consumers)."""
	return [_entry(row) for row in (latest_rows() if rows is None else rows)]


def _entry(row: dict[str, Any]) -> CatalogEntry:
	shipped = catalog_entry(row["subject"]) if row["origin"] == subjects.CATALOG else None
	description = row["description"] or (shipped.description if shipped else row["subject"])
	if row["status"] == "Deprecated":
		replacement = f" Use {row['replaced_by_title']} instead." if row["replaced_by_title"] else ""
		description = f"Deprecated.{replacement} {description}"
	return CatalogEntry(
		type=row["subject"],
		version=int(row["version"]),
		owner=shipped.owner if shipped else _owner_key(row),
		direction=shipped.direction if shipped else "published",
		description=description,
		schema=row["schema"],
		examples=tuple(row["examples"]),
		consumers=shipped.consumers if shipped else (),
		entity=(shipped.entity if shipped else row["reference_doctype"]) or "",
		actions=shipped.actions if shipped else (row["subject"].rsplit(".", 1)[-1],),
	)


def _owner_key(row: dict[str, Any]) -> str:
	if row["origin"] == subjects.DOCTYPE:
		return "core"
	team = (row["owner_team"] or "").strip()
	by_title = {title.lower(): key for key, title in MODULES.items()}
	if team.lower() in MODULES:
		return team.lower()
	return by_title.get(team.lower()) or team or "core"


def topic_rule():
	"""Returns ``topic_of(entry)``: the topic each event type goes to under Fabric Settings' rule."""
	template = frappe.db.get_single_value("Fabric Settings", "topic_template") or DEFAULT_TOPIC_TEMPLATE
	tenant = frappe.local.site

	def topic_of(entry: CatalogEntry) -> str:
		return topic_for(template, entry.type, entry.entity or "event", tenant)

	return topic_of


def site_asyncapi_document() -> dict[str, Any]:
	"""Returns the AsyncAPI 3.0 document of this site's events, topics and Kafka servers."""
	servers = (frappe.db.get_single_value("Fabric Settings", "bootstrap_servers") or "").split(",")
	return asyncapi_document(
		catalog_entries(),
		topic_rule(),
		title=f"Cauldron event bus ({frappe.local.site})",
		version=cauldron_fabric.__version__,
		servers={f"kafka{n}": host.strip() for n, host in enumerate(servers, 1) if host.strip()} or None,
	)


def catalog_page() -> list[dict[str, Any]]:
	"""Returns what the catalog page lists for each event type, sorted by type."""
	rows = latest_rows()
	topic_of = topic_rule()
	counts = dict(frappe.db.sql("SELECT subject, COUNT(*) FROM `tabEvent Schema` GROUP BY subject"))
	default = subjects.default_mode().value
	page = []
	for row, entry in zip(rows, catalog_entries(rows), strict=True):
		page.append(
			{
				"type": entry.type,
				"version": entry.version,
				"versions": int(counts.get(entry.type, 1)),
				"dataSchema": data_schema_uri(entry.type, entry.version),
				"owner": row["owner_team"] or entry.owner_title,
				"ownerUser": row["owner_user"],
				"origin": row["origin"],
				"direction": entry.direction,
				"consumers": [MODULES.get(m, m) for m in entry.consumers],
				"status": row["status"],
				"replacedBy": row["replaced_by_title"],
				"compatibility": row["compatibility"] or default,
				"topic": topic_of(entry),
				"description": entry.description,
				"schema": json.dumps(row["schema"], indent=2),
				"examples": [json.dumps(example, indent=2) for example in entry.examples],
			}
		)
	return page


def codegen_schemas(patterns: tuple[str, ...] = ()) -> dict[str, Any]:
	"""Returns ``{event type: payload schema}`` of the latest versions, optionally by glob pattern."""
	return {
		row["subject"]: row["schema"]
		for row in latest_rows()
		if not patterns or any(fnmatch.fnmatchcase(row["subject"], p) for p in patterns)
	}
