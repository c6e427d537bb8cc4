"""Event Delivery: one event on its way to one subscription, with every attempt.

Rows are written by routing (in the transaction of the event) and by delivery workers; this
controller only stops edits through the ORM. Dead rows are retried from their Dead Letter.
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.model.document import Document

from cauldron_fabric.core.delivery.records import delivery_id


class EventDelivery(Document):
	@property
	def webhook_id(self) -> str | None:
		"""Returns the webhook-id every attempt of this delivery carries (see records.delivery_id)."""
		return delivery_id(self.event_id, self.subscription) if self.event_id and self.subscription else None

	def validate(self) -> None:
		frappe.throw(
			_(
				"Deliveries are kept by the delivery workers. Retry or discard a dead one from its Dead Letter."
			)
		)
