"""Database set-up of deliveries that a DocType cannot declare: composite and unique indexes."""

from __future__ import annotations

import frappe

from cauldron_fabric.core.delivery.store_sql import DEFAULT_TABLE, INDEXES

UNIQUE = ("fabric_subscription_event", ("subscription", "event_id"))
# The subscription form's recent deliveries, failures and latency read a time window.
RECENT = {"fabric_delivery_recent": ("subscription", "creation")}


def ensure_delivery_indexes() -> None:
	"""Adds the unique (subscription, event) key and the workers' composite indexes if missing."""
	if not frappe.db.table_exists("Event Delivery"):
		return
	existing = {row[2] for row in frappe.db.sql(f"SHOW INDEX FROM `{DEFAULT_TABLE}`")}
	name, columns = UNIQUE
	if name not in existing:
		frappe.db.sql_ddl(f"ALTER TABLE `{DEFAULT_TABLE}` ADD UNIQUE KEY `{name}` ({_columns(columns)})")
	for name, columns in {**INDEXES, **RECENT}.items():
		if name not in existing:
			frappe.db.sql_ddl(f"CREATE INDEX `{name}` ON `{DEFAULT_TABLE}` ({_columns(columns)})")


def _columns(columns) -> str:
	return ", ".join(f"`{c}`" for c in columns)
