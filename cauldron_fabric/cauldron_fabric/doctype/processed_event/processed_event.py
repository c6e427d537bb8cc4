"""Processed Event: the mark a consumer group leaves for each event, in the handler's transaction.

Rows are inserted by ``consume.tracking`` (raw SQL, one per event); the unique key on
(consumer group, event id) is what makes a redelivered event change nothing twice.
"""

from __future__ import annotations

import frappe
from frappe.model.document import Document

from cauldron_fabric.core.consumer.tracking_sql import UNIQUE_KEY


class ProcessedEvent(Document):
	pass


def on_doctype_update() -> None:
	"""Adds the unique key (consumer group, event id) that tracking relies on."""
	frappe.db.add_unique("Processed Event", ["consumer_group", "event_id"], constraint_name=UNIQUE_KEY)
