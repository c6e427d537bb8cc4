"""Correlation and causation ids for the events of one request, job or consumed event.

An incoming ``X-Correlation-ID`` header is taken when it is well formed; otherwise the first
event of the request creates one. The id goes back to the caller in the response header.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import frappe

from cauldron_fabric.core.envelope import KEY_LENGTH, new_event_id
from cauldron_fabric.core.markup import has_markup

HEADER = "X-Correlation-ID"
VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def correlation_id() -> str:
	"""Returns the correlation id of the current request or job, creating one when absent."""
	current = getattr(frappe.local, "fabric_correlation_id", None)
	if not current:
		current = frappe.local.fabric_correlation_id = incoming_correlation_id() or new_event_id()
	return current


def incoming_correlation_id() -> str | None:
	"""Returns the request's ``X-Correlation-ID`` when there is a request and the id is well formed."""
	request = getattr(frappe.local, "request", None)
	value = request.headers.get(HEADER) if request is not None else None
	return value if value and VALID_ID.match(value) else None


def causation_id() -> str | None:
	"""Returns the id of the event that caused the current work, if any."""
	return getattr(frappe.local, "fabric_causation_id", None)


def read_correlation_header() -> None:
	"""Takes a well-formed ``X-Correlation-ID`` from the request (before_request hook).

	Frappe logs a user in before the before_request hooks run, so the login event may already
	have set this request's id (from the header, or new): it is kept for the whole request.
	"""
	if not getattr(frappe.local, "fabric_correlation_id", None):
		frappe.local.fabric_correlation_id = incoming_correlation_id()


def write_correlation_header(response=None, request=None) -> None:
	"""Returns the correlation id to the caller when the request used one (after_request hook)."""
	current = getattr(frappe.local, "fabric_correlation_id", None)
	if current and response is not None:
		response.headers[HEADER] = current


@contextmanager
def caused_by(event_id: str, correlation: str | None = None) -> Iterator[None]:
	"""Marks every event emitted inside the block as caused by ``event_id``.

	Consumers wrap a handler in it, so the document changes the handler makes carry the
	consumed event as their ``causationId`` and stay in its conversation (``correlationId``;
	one the Event Log cannot keep starts a new conversation, see keepable).
	"""
	saved = (getattr(frappe.local, "fabric_correlation_id", None), causation_id())
	frappe.local.fabric_causation_id = event_id
	if correlation:
		frappe.local.fabric_correlation_id = correlation if keepable(correlation) else new_event_id()
	try:
		yield
	finally:
		frappe.local.fabric_correlation_id, frappe.local.fabric_causation_id = saved


def keepable(correlation: str) -> bool:
	"""Tells whether a consumed event's correlationId can be kept in the Event Log as it is.

	Another module's event may carry any correlationId: the Event Log keeps 140 characters (a
	longer one would fail every change the handler makes), and writes it by SQL into a column
	Desk renders as HTML, where a ``<`` or ``>`` would run as markup in an admin's browser.
	"""
	return len(correlation) <= KEY_LENGTH and not has_markup(correlation)
