"""Correlation and causation ids for the events of one request, job or consumed event.

An incoming ``X-Correlation-ID`` header is taken when it is well formed; otherwise the first
event of the request creates one. The id goes back to the caller in the response header. A
background job continues the conversation of the request, job or consumed event that enqueued
it: Frappe 15 has no enqueue hook, so ``carry_context_into_jobs`` wraps what every enqueue calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import frappe
from frappe.utils import background_jobs
from rq import get_current_job

from cauldron_fabric.core.envelope import KEY_LENGTH, new_event_id
from cauldron_fabric.core.markup import has_markup
from cauldron_fabric.emit.held import in_place_of

HEADER = "X-Correlation-ID"
VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}\Z")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
# The enqueuing context a background job continues, kept in its RQ job's meta under this key.
CARRIED = "fabric_context"


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
	# An event published through the API may name a conversation in any text; one with a line
	# break or another control character cannot be a header (writing it would raise, and the
	# after_request hooks listed after this one would not run), nor can text beyond ASCII
	# travel in one everywhere: the answer's body carries it.
	if current and response is not None and current.isascii() and not CONTROL_CHARACTERS.search(current):
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


def carried_context() -> Callable[[], dict[str, str]] | None:
	"""Returns a function giving the ids a job queued now carries, or None outside any conversation.

	A request always has one; its id is made only when a job is queued (Frappe's pages count
	and list jobs through the same get_queue, and a request that queues nothing gets no id),
	and is the request's id whenever it is made, so the request, its jobs and the caller share
	it. A job, a consumed event's handler or a command has one once an event or its own
	enqueuer gave it one, taken now: a handler's block may end before the commit queues the job.
	A job the scheduler enqueues starts its own, as a job did before jobs continued their
	enqueuer's.
	"""
	correlation, causation = getattr(frappe.local, "fabric_correlation_id", None), causation_id()
	if causation:
		carried = {"correlationId": correlation_id(), "causationId": causation}
	elif correlation:
		carried = {"correlationId": correlation}
	elif getattr(frappe.local, "request", None) is not None:
		return lambda: {"correlationId": correlation_id()}
	else:
		return None
	return lambda: dict(carried)


def continue_enqueuing_context() -> None:
	"""Continues the conversation of what enqueued the running job (before_job hook).

	The job's meta came through Redis: an id the Event Log could not keep is ignored, as is a
	job enqueued outside any conversation or by a version of the app that did not carry one;
	its first event then starts a conversation of its own.
	"""
	job = get_current_job()
	carried = job.meta.get(CARRIED) if job is not None else None
	if not isinstance(carried, dict):
		return
	correlation, causation = carried.get("correlationId"), carried.get("causationId")
	_put_back_after_the_job((getattr(frappe.local, "fabric_correlation_id", None), causation_id()))
	if _carriable(correlation):
		frappe.local.fabric_correlation_id = correlation
	if _carriable(causation):
		frappe.local.fabric_causation_id = causation


def _put_back_after_the_job(ids: tuple[str | None, str | None]) -> None:
	"""Gives the caller its own correlation and causation ids back when the job ends.

	A worker's job ends with its frappe.local; one run at once (``is_async=False``, which
	Frappe's tests send through RQ in the caller's process, at the commit when queued after it)
	shares the caller's, which would otherwise go on in the conversation of a handler's block
	that has already ended.
	"""
	job = getattr(frappe.local, "job", None)
	if job and job.get("after_job") is not None:
		job.after_job.add(lambda: _restore(ids))


def _restore(ids: tuple[str | None, str | None]) -> None:
	frappe.local.fabric_correlation_id, frappe.local.fabric_causation_id = ids


def _carriable(value) -> bool:
	"""Tells whether a carried id is one the enqueuer's own events could carry.

	A handler's ids are a consumed event's (any text of up to 140 characters without markup,
	see keepable), not only the header's well-formed ones: held to the header's rule, a job
	queued in an order's conversation named ``PO/2024 0042`` would start another.
	"""
	return isinstance(value, str) and bool(value) and keepable(value)


def carry_context_into_jobs() -> None:
	"""Makes every job Frappe enqueues carry the enqueuing context in its meta (once per process).

	Data Import, Prepared Report, server scripts and ERPNext bind Frappe's ``enqueue`` when they
	are imported, before any app code runs, so wrapping it would miss them; every enqueue calls
	``get_queue`` as it runs, before a job is queued at once or after the commit (``now=True``
	and synchronous calls need none: they run in the caller's context). RQ's meta travels beside
	the job's arguments and never reaches its method; a worker of an older version ignores it.
	"""
	if getattr(background_jobs.get_queue, "fabric_watched", False):
		return
	get_queue = background_jobs.get_queue

	# Arguments pass through as given, so that a Frappe release adding one keeps working.
	def get_queue_carrying(*args, **kwargs):
		queue = get_queue(*args, **kwargs)
		carried = carried_context()  # now: enqueue_after_commit queues the job later
		if carried is not None:
			queue.enqueue_call = _enqueue_call_carrying(queue.enqueue_call, carried)
		return queue

	background_jobs.get_queue = in_place_of(get_queue, get_queue_carrying)


def _enqueue_call_carrying(enqueue_call, carried: Callable[[], dict[str, str]]):
	"""Wraps a queue's ``enqueue_call`` to add the ``carried`` ids to the meta of Frappe's jobs."""

	def enqueue_call_carrying(func, *args, **kwargs):
		if func is background_jobs.execute_job:
			kwargs["meta"] = {**(kwargs.get("meta") or {}), CARRIED: carried()}
		return enqueue_call(func, *args, **kwargs)

	return enqueue_call_carrying


carry_context_into_jobs()
