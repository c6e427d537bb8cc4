"""The signing secret and header values of a webhook subscription, decrypted for delivery workers.

Every webhook is signed. A subscription whose secret is missing (a restore without the
``__Auth`` table, a row deleted) or encrypted under another site's key is refused here, with
what to do, and loads as a BrokenSubscription: its events become dead letters, retried once it
is fixed, instead of going out unsigned or stopping the worker for every other subscription.
"""

from __future__ import annotations

from typing import Any

import frappe

from cauldron_fabric.core.delivery import SubscriptionInvalid

DOCTYPE = "Event Subscription"
HEADERS_DOCTYPE = "Event Subscription Header"


def webhook_credentials(name: str, headers: list[Any]) -> tuple[str, list[tuple[str, str]]]:
	"""Returns the subscription's signing secret and its header pairs (``headers``: its rows).

	Raises SubscriptionInvalid when the secret is missing or a value cannot be decrypted.
	"""
	try:
		secret = _password(DOCTYPE, name, "webhook_secret")
		pairs = [(h.header, _password(HEADERS_DOCTYPE, h.name, "value") or "") for h in headers]
	except frappe.ValidationError:  # frappe.utils.password.decrypt: InvalidToken
		raise SubscriptionInvalid(
			name,
			[
				"Its signing secret or a header value cannot be decrypted with this site's encryption key "
				"(a site restored without its site_config.json?). Put the original encryption_key back in "
				"site_config.json, or type the header values again and rotate the secret (telling the "
				"receiver)."
			],
		) from None
	if not secret:
		raise SubscriptionInvalid(
			name,
			[
				"It has no signing secret, and webhooks are never sent unsigned. Save the subscription to "
				"generate one (or paste the receiver's whsec_ secret) and give it to the receiver."
			],
		)
	return secret, pairs


def _password(doctype: str, name: str, fieldname: str) -> str | None:
	from frappe.utils.password import get_decrypted_password

	return get_decrypted_password(doctype, name, fieldname, raise_exception=False)
