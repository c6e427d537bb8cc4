"""Event Log: every event the fabric recorded, immutable, with its delivery status.

Rows are written by the outbox (one INSERT in the transaction of the change) and settled by
relays; this controller only stops edits through the ORM.
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.model.document import Document


class EventLog(Document):
	def validate(self) -> None:
		if not self.is_new():
			frappe.throw(_("Events are immutable. Requeue a failed event instead of editing it."))
