"""Planning deliveries in the transaction that records the events.

``record()`` calls ``enqueue_deliveries`` right after appending the events to the outbox, so
the deliveries commit or roll back with them. Matching runs against the process's cached
index (no query per event); with no subscription on the site this returns at once. After the
commit one Redis message wakes the delivery workers; if it is lost they find the rows anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import frappe
from frappe.utils import now_datetime

from cauldron_fabric.core.delivery import DeliveryRequest, build_enqueue, plan_deliveries
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.delivery.subscriptions import routing_index
from cauldron_fabric.emit.writes import escapes_in_literals, write_in_fitting_statements
from cauldron_fabric.services.wakeups import wake_after_commit


def enqueue_deliveries(envelopes: Sequence[Envelope]) -> None:
	"""Queues one delivery per matching subscription, in the current transaction."""
	if not envelopes:
		return
	index = routing_index()
	if not len(index):
		return
	requests: list[DeliveryRequest] = []
	for envelope in envelopes:
		requests += plan_deliveries(envelope, index)
	insert_deliveries(requests)


def insert_deliveries(requests: Sequence[DeliveryRequest]) -> None:
	"""Inserts deliveries (an existing subscription-event pair is skipped) and wakes the workers.

	Every row carries its event: an event matched by several subscriptions is repeated in the
	INSERT, which may then be more than the database takes in one statement although the
	event itself was (the outbox wrote it). Such a group is written delivery by delivery.
	"""
	if not requests:
		return
	write_in_fitting_statements(requests, _enqueue_statement)
	wake_delivery_workers_after_commit()


def _enqueue_statement(requests: Sequence[DeliveryRequest]) -> tuple[str, list[Any]]:
	session = getattr(frappe.local, "session", None)
	actor = (session and session.get("user")) or "Administrator"
	return build_enqueue(requests, actor=actor, now=now_datetime(), escapes=escapes_in_literals())


def delivery_channel() -> str:
	"""Returns the Redis channel that wakes this site's delivery workers."""
	return f"cauldron_fabric:deliveries:{frappe.local.site}"


def wake_delivery_workers_after_commit() -> None:
	"""Schedules one wake-up of the delivery workers for when the transaction commits."""
	wake_after_commit(delivery_channel())
