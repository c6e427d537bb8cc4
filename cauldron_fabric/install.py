"""Install and migrate hooks: the Fabric Manager role, default settings, outbox indexes."""

from __future__ import annotations

import frappe

from cauldron_fabric.core.outbox.statements import DEFAULT_TABLE, INDEXES, index_statements

ROLE = "Fabric Manager"
PUBLISHER_ROLE = "Fabric Publisher"  # may publish events through the API, nothing else


SUPPORTED_DATABASES = ("mariadb",)

# The retention purge, Desk's Event Log list (sorted by creation) and its "Created On" filters
# read the Event Log by creation. Frappe adds this index for a DocType sorted by creation only
# when it alters an existing table, not when it creates one; named as Frappe names it, so the
# two never coexist.
SITE_INDEXES = {"creation": ("creation",)}


def before_install() -> None:
	"""Refuses to install on a database the outbox is not written for, before anything changes."""
	check_database(frappe.db.db_type)


def check_database(db_type: str) -> None:
	"""Raises a clear error unless ``db_type`` is a database the outbox SQL is written for."""
	if db_type not in SUPPORTED_DATABASES:
		frappe.throw(
			f"Cauldron Fabric needs a MariaDB site; this site runs on {db_type}. The outbox relies "
			"on MariaDB sequences, SKIP LOCKED claims and JSON_TABLE. Install it on a MariaDB site "
			"(ERPNext's supported database).",
			title="Database not supported",
		)


def after_install() -> None:
	"""Creates the role, saves Fabric Settings with their defaults and adds the indexes."""
	ensure_role()
	ensure_role(PUBLISHER_ROLE, desk_access=0)
	if not frappe.db.get_single_value("Fabric Settings", "topic_template"):
		frappe.new_doc("Fabric Settings").save(ignore_permissions=True)
	ensure_indexes()
	from cauldron_fabric.delivery.indexes import ensure_delivery_indexes

	ensure_delivery_indexes()
	frappe.get_attr("cauldron_fabric.registry.catalog.sync_registry")()


def after_migrate() -> None:
	"""Keeps the role and the Event Log's indexes in place after every migrate, and shows the
	subscriptions that no longer compile."""
	ensure_role()
	ensure_role(PUBLISHER_ROLE, desk_access=0)
	ensure_indexes()
	from cauldron_fabric.delivery.indexes import ensure_delivery_indexes

	ensure_delivery_indexes()
	frappe.get_attr("cauldron_fabric.registry.catalog.sync_registry")()
	# An upgrade may refuse what an earlier version saved: show those subscriptions at once.
	frappe.get_attr("cauldron_fabric.delivery.subscriptions.check_subscriptions")()


def ensure_role(role: str = ROLE, desk_access: int = 1) -> None:
	"""Creates a role (the Fabric Manager role, with desk access, by default) if missing."""
	if not frappe.db.exists("Role", role):
		frappe.get_doc({"doctype": "Role", "role_name": role, "desk_access": desk_access}).insert(
			ignore_permissions=True
		)


def ensure_indexes() -> None:
	"""Adds the indexes of the Event Log the relay, the retention and the Desk rely on."""
	existing = {row[2] for row in frappe.db.sql(f"SHOW INDEX FROM `{DEFAULT_TABLE}`")}
	for statement in index_statements(DEFAULT_TABLE, existing, {**INDEXES, **SITE_INDEXES}):
		frappe.db.sql_ddl(statement)
