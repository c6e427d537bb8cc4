"""Event Subscription actions: delivery statistics, signing secrets, handlers, test events."""

from __future__ import annotations

from typing import Any

import frappe
from frappe import _

from cauldron_fabric.api.params import number_param, required, text_param
from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.core.delivery import DeliveryRequest, generate_secret


@frappe.whitelist(methods=["GET"])
def get_delivery_stats(subscription: str | None = None, hours: int = 24) -> dict[str, Any]:
	"""Returns the subscription's deliveries per status, latency percentiles, latest deliveries and failures."""
	require_role()
	from cauldron_fabric.delivery.stats import subscription_stats

	_existing(subscription)
	return subscription_stats(subscription, min(max(number_param(hours, "hours"), 1), 24 * 30))


@frappe.whitelist(methods=["POST"])
def reveal_secret(subscription: str | None = None) -> dict[str, str | None]:
	"""Returns the webhook signing secret, to configure the receiver's verification."""
	require_role()
	doc = _existing(subscription)
	return {"secret": doc.get_password("webhook_secret", raise_exception=False)}


@frappe.whitelist(methods=["POST"])
def new_secret() -> dict[str, str]:
	"""Returns a fresh Standard Webhooks secret (``whsec_…``); nothing is saved."""
	require_role()
	return {"secret": generate_secret()}


@frappe.whitelist(methods=["GET"])
def list_handlers() -> dict[str, list[str]]:
	"""Returns the handler paths installed apps register, with their event type patterns."""
	require_role()
	from cauldron_fabric.delivery.subscriptions import registered_handlers

	return registered_handlers()


@frappe.whitelist(methods=["POST"])
def send_test_event(subscription: str | None = None) -> dict[str, str]:
	"""Queues a ``subscription.test`` event for this subscription only (not in the Event Log:
	it is no event of the site, and no other subscription or broker gets it)."""
	require_role()
	from cauldron_fabric.delivery.recording import insert_deliveries
	from cauldron_fabric.emit.recorder import new_envelope

	doc = _existing(subscription)
	if not doc.enabled:
		# Queued anyway, it would only turn into a dead letter at once.
		frappe.throw(
			_("Subscription {0} is disabled: enable it, then send the test event.").format(doc.name),
			frappe.ValidationError,
		)
	envelope = new_envelope(
		"subscription.test", "Event Subscription", doc.name, "test", {"subscription": doc.name, "test": True}
	)
	insert_deliveries([DeliveryRequest(doc.name, envelope)])
	return {"eventId": envelope.id}


def _existing(subscription: str | None):
	"""Returns the named subscription; a missing name, or anything but a text, is a validation error.

	Frappe reads an object or a list where a name belongs as filters: ``{"name": ["like", "%"]}``
	picked whichever subscription matched first.
	"""
	text_param(required(subscription, "subscription"), "subscription")
	if not frappe.db.exists("Event Subscription", subscription):
		frappe.throw(_("No Event Subscription {0}.").format(subscription), frappe.DoesNotExistError)
	return frappe.get_doc("Event Subscription", subscription)
