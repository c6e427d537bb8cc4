"""A per-user limit on calls to the publish API, counted per minute in Redis.

Every web worker shares the count, so one publisher in a loop cannot fill the outbox (and every
subscription's deliveries) for everyone; the limit is *Publish API calls per user and minute*
in Fabric Settings, 0 turning it off.
"""

from __future__ import annotations

import time

import frappe
from frappe import _
from frappe.utils import cint

HEADER = "Retry-After"


class TooManyCalls(frappe.ValidationError):
	"""A user called the publish API more often than Fabric Settings allow in this minute."""

	http_status_code = 429


def limit_publish_calls() -> None:
	"""Counts the current user's call; raises TooManyCalls once they exceed this minute's limit.

	The counter is one Redis key per user and minute, counted and given its expiry in one
	transaction, so a worker that dies between the two cannot leave a counter that never expires.
	"""
	limit = cint(frappe.get_cached_doc("Fabric Settings").get("publish_rate_limit"))
	if limit <= 0:
		return
	now = time.time()
	key = frappe.cache.make_key(f"cauldron_fabric:publish_calls:{frappe.session.user}:{int(now // 60)}")
	pipe = frappe.cache.pipeline()
	pipe.incr(key)
	pipe.expire(key, 120)
	calls, _expiry = pipe.execute()
	if calls > limit:
		wait = max(1, 60 - int(now % 60))
		frappe.local.fabric_retry_after = wait
		frappe.throw(
			_(
				"You made more than {0} calls this minute to the publish API (the limit per user in "
				"Fabric Settings); try again in {1} seconds."
			).format(limit, wait),
			TooManyCalls,
			title=_("Too many calls"),
		)


def write_retry_after(response=None, request=None) -> None:
	"""Tells a refused caller when to try again (after_request hook, error responses included)."""
	wait = getattr(frappe.local, "fabric_retry_after", None)
	if wait and response is not None:
		response.headers[HEADER] = str(wait)
