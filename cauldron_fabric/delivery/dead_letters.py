"""Dead deliveries as Dead Letter documents, and putting them back in play.

A delivery that runs out of attempts (or is refused for good) is a ``Dead`` row of Event
Delivery; each gets one open Dead Letter with the event, the subscription and every attempt's
error. The worker files them right after settling; the scheduler's safety net files any a
dying worker left behind. Retry makes the delivery pending again, due now, with a fresh
attempt count (its history is kept); discarding a letter discards its delivery.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import frappe
from frappe import _
from frappe.utils import cint, now_datetime

from cauldron_fabric.core.delivery import DEAD, DELIVERED, DISCARDED, PENDING, DeliveryRequest
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.delivery.recording import insert_deliveries, wake_delivery_workers_after_commit

SOURCE = "Delivery"
OPEN_STATUSES = ("Dead", "Retrying")
BATCH = 500


def record_dead_letters(seqs: Sequence[int] | None = None) -> int:
	"""Files a Dead Letter for each dead delivery without an open one; commits; returns how many.

	The delivery's number is compared as text: compared with a number, the reference (text)
	cannot use its index, and every dead delivery read every dead letter. CONCAT, not CAST:
	its text takes the column's collation, whatever the connection's.
	"""
	frappe.db.rollback()  # see what the delivery store committed on its own connection
	count = _file_dead_letters(seqs)
	frappe.db.commit()
	return count


def dead_letter_pending_deliveries(subscription: str, reason: str) -> int:
	"""Ends the subscription's pending deliveries as dead, each with a Dead Letter giving ``reason``.

	Runs in the caller's transaction (the subscription's delete), so the deliveries end with it or
	not at all. Deliveries a worker is sending right now are skipped: the worker settles them, and
	finds the subscription gone at their next attempt, if any.
	"""
	seqs = frappe.db.sql_list(
		"""SELECT name FROM `tabEvent Delivery` WHERE subscription = %s AND status = %s
		FOR UPDATE SKIP LOCKED""",
		(subscription, PENDING),
	)
	for seq in seqs:
		frappe.db.sql(
			"""UPDATE `tabEvent Delivery` SET status = %s, last_error = %s, modified = %s,
			modified_by = %s WHERE name = %s AND status = %s""",
			(DEAD, reason, now_datetime(), frappe.session.user, seq, PENDING),
		)
	return _file_dead_letters(seqs) if seqs else 0


def _file_dead_letters(seqs: Sequence[int] | None) -> int:
	only = f"AND d.name IN ({', '.join(['%s'] * len(seqs))})" if seqs else ""
	rows = frappe.db.sql(
		f"""SELECT d.name, d.subscription, d.event_id, d.event_type, d.envelope, d.attempts,
			d.last_error, d.last_status_code, d.attempt_log
		FROM `tabEvent Delivery` d
		WHERE d.status = %s {only} AND NOT EXISTS (
			SELECT 1 FROM `tabDead Letter` l WHERE l.source_type = %s
			AND l.reference = CONCAT(d.name) AND l.status IN %s)
		ORDER BY d.name LIMIT %s""",
		(DEAD, *[int(s) for s in seqs or ()], SOURCE, OPEN_STATUSES, BATCH),
		as_dict=True,
	)
	for row in rows:
		_dead_letter(row).insert(ignore_permissions=True)
	return len(rows)


def _dead_letter(row) -> frappe.model.document.Document:
	envelope = json.loads(row.envelope or "{}")
	data = envelope.get("data") or {}
	return frappe.get_doc(
		{
			"doctype": "Dead Letter",
			"source_type": SOURCE,
			"status": "Dead",
			"subscription": row.subscription,
			"reference": str(row.name),
			"event_id": row.event_id,
			"event_type": row.event_type,
			"entity": data.get("entity"),
			"entity_id": data.get("entityId"),
			"attempts": row.attempts,
			"last_error": row.last_error,
			"error_class": _error_class(row),
			"attempt_log": json.dumps(json.loads(row.attempt_log or "[]"), indent=1),
			"envelope": json.dumps(envelope, indent=1),
		}
	)


def _error_class(row) -> str:
	if row.last_status_code:
		return f"HTTP {row.last_status_code}"
	if (row.last_error or "").startswith("Gave up"):
		return "Retries exhausted"
	return "Refused"


def retry(dead_letter) -> None:
	"""Makes the letter's delivery pending again (re-creating it if it was purged); wakes the workers."""
	subscription = dead_letter.subscription
	enabled = frappe.db.get_value("Event Subscription", subscription, "enabled")
	if enabled is None:
		frappe.throw(
			_(
				"Subscription {0} no longer exists, so this event has nowhere to go. Discard the dead letter."
			).format(frappe.bold(subscription))
		)
	if not cint(enabled):
		frappe.throw(
			_("Subscription {0} is disabled. Enable it, then retry.").format(frappe.bold(subscription))
		)
	seq = cint(dead_letter.reference)
	status = frappe.db.get_value("Event Delivery", seq, "status") if seq else None
	if status == DELIVERED:
		frappe.throw(
			_("This event was delivered since it died; there is nothing to retry. Discard the letter.")
		)
	if status in (DEAD, DISCARDED):
		# By primary key only: a range update would gap-lock and stall saves enqueuing deliveries.
		frappe.db.sql(
			"""UPDATE `tabEvent Delivery` SET status = %s, attempts = 0, next_attempt_at = %s,
			modified = %s, modified_by = %s WHERE name = %s AND status IN (%s, %s)""",
			(PENDING, now_datetime(), now_datetime(), frappe.session.user, seq, DEAD, DISCARDED),
		)
	elif status is None:
		envelope = Envelope.from_json(dead_letter.envelope)
		insert_deliveries([DeliveryRequest(subscription, envelope)])
	wake_delivery_workers_after_commit()


def discard_delivery(doc, method=None) -> None:
	"""Discards the delivery of a Delivery dead letter once the letter is discarded (doc event)."""
	if doc.source_type != SOURCE or doc.status != "Discarded" or not cint(doc.reference):
		return
	frappe.db.sql(
		"UPDATE `tabEvent Delivery` SET status = %s, modified = %s, modified_by = %s "
		"WHERE name = %s AND status IN (%s, %s)",
		(DISCARDED, now_datetime(), frappe.session.user, cint(doc.reference), DEAD, PENDING),
	)
