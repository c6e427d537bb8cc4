"""Event Delivery: one event on its way to one subscription, with every attempt.

Rows are written by routing (in the transaction of the event) and by delivery workers; this
controller only stops edits through the ORM. Dead rows are retried from their Dead Letter.
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.model.document import Document


class EventDelivery(Document):
	def validate(self) -> None:
		frappe.throw(
			_(
				"Deliveries are kept by the delivery workers. Retry or discard a dead one from its Dead Letter."
			)
		)
