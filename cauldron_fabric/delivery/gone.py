"""Subscriptions whose webhook receiver answered 410 Gone: disabled, saying why, where admins look.

The receiver says the URL will never work again, so every later event would become a dead letter
the same way. The worker disables the subscription, writes the reason on its form (*Disabled
because*, cleared when it is enabled again) and in its timeline. Its deliveries already queued
then follow the disabled-subscription rule: dead letters at their next attempt, "enable it, then
retry". The event that got the 410 is a dead letter saying to enable the subscription and retry.
"""

from __future__ import annotations

from collections.abc import Sequence

import frappe
from frappe.utils import escape_html

from cauldron_fabric.core.delivery import DeliveryAttempt
from cauldron_fabric.core.urls import redact_url
from cauldron_fabric.delivery.credentials import DOCTYPE
from cauldron_fabric.delivery.subscriptions import subscriptions_changed


def disable_gone_subscriptions(attempts: Sequence[DeliveryAttempt]) -> list[str]:
	"""Disables each still-enabled subscription whose receiver answered 410 Gone; commits; returns their names."""
	first = {}
	for attempt in attempts:
		if attempt.gone:
			first.setdefault(attempt.subscription, attempt)
	disabled = []
	for name, attempt in first.items():
		if frappe.db.get_value(DOCTYPE, name, "enabled", for_update=True) != 1:
			continue  # already disabled (by an earlier 410, or by hand), or deleted
		reason = (
			f"Disabled at {attempt.started_at:%Y-%m-%d %H:%M:%S}: {redact_url(attempt.destination)} answered "
			"410 Gone, so the receiver says this URL is gone for good. Fix the URL or bring the receiver "
			"back, enable the subscription, then retry its dead letters."
		)
		frappe.db.set_value(DOCTYPE, name, {"enabled": 0, "disabled_reason": reason})
		frappe.get_doc(
			{
				"doctype": "Comment",
				"comment_type": "Info",
				"reference_doctype": DOCTYPE,
				"reference_name": name,
				"content": escape_html(reason),
			}
		).insert(ignore_permissions=True)
		disabled.append(name)
	if disabled:
		subscriptions_changed()
	frappe.db.commit()
	return disabled
