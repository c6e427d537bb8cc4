"""Request-reply over the API: send a request event and get the reply, within a timeout.

``POST /api/method/cauldron_fabric.api.requests.send_request`` with ``type``, ``data`` (JSON
object), optional ``timeout`` (seconds) and ``target``. Answers 504 when no reply comes in time,
503 while the target's circuit is open or no broker is configured, and 502 when the responder
reports a failure.
"""

from __future__ import annotations

from typing import Any

import frappe
from frappe import _

from cauldron_fabric.api.params import json_param, number_param, required, shown_text_param, text_param
from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.api.publish import site_type_problems
from cauldron_fabric.core.consumer import CircuitOpen, RequestTimeout, ResponderFailed
from cauldron_fabric.core.consumer.circuit import describe
from cauldron_fabric.core.errors import ConfigurationError, FabricError, PermanentError

MAX_TIMEOUT = 120.0


class RequestTimedOut(frappe.ValidationError):
	http_status_code = 504


class TargetUnavailable(frappe.ValidationError):
	http_status_code = 503


class ResponderError(frappe.ValidationError):
	http_status_code = 502


@frappe.whitelist(methods=["POST"])
def send_request(
	type: str | None = None,
	data: dict | str | None = None,
	timeout: float | None = None,
	target: str | None = None,
) -> dict[str, Any]:
	"""Sends a request event and returns the reply envelope, its correlation id and the round trip time."""
	require_role()
	required(type, "type")
	from cauldron_fabric.consume.requesting import site_requester

	text_param(type, "type")
	shown_text_param(target, "target")  # it names a Fabric Circuit
	if problems := site_type_problems(type):
		# A request goes out under the site's own source: a manager could otherwise publish an
		# approval.response and decide a request they asked for themselves (four eyes).
		frappe.throw(_("The request was not sent: {0}.").format("; ".join(problems)), frappe.ValidationError)
	payload = json_param(data, "data") if isinstance(data, str) and data.strip() else (data or {})
	if not isinstance(payload, dict):
		frappe.throw(_("data must be a JSON object."), frappe.ValidationError)
	if timeout is not None:
		timeout = number_param(timeout, "timeout", whole=False)
	if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
		frappe.throw(
			_("timeout must be between 0 and {0} seconds.").format(MAX_TIMEOUT), frappe.ValidationError
		)
	try:
		reply = site_requester().request(type, payload, timeout, target=target, user_id=frappe.session.user)
	except RequestTimeout as exc:
		frappe.throw(str(exc), RequestTimedOut, title=_("No reply"))
	except CircuitOpen as exc:
		frappe.throw(str(exc), TargetUnavailable, title=_("Circuit open"))
	except ResponderFailed as exc:
		frappe.throw(str(exc), ResponderError, title=_("Responder failed"))
	except ConfigurationError as exc:
		# The site's settings, not the caller's request: 503 until an admin sets them, as the
		# module promises, not a "bad request" the caller cannot fix.
		frappe.throw(str(exc), TargetUnavailable, title=_("Bus not configured"))
	except PermanentError as exc:
		frappe.throw(str(exc), frappe.ValidationError, title=_("Bad request"))
	except FabricError as exc:
		frappe.throw(str(exc), TargetUnavailable, title=_("Bus unavailable"))
	return {
		"correlationId": reply.request.id,
		"request": reply.request.to_dict(),
		"reply": reply.envelope.to_dict(),
		"elapsedSeconds": round(reply.elapsed, 4),
	}


@frappe.whitelist(methods=["GET"])
def get_circuits() -> dict[str, Any]:
	"""Returns every request target's circuit (closed, open, half_open) as all workers see it."""
	require_role()
	from cauldron_fabric.consume.requesting import site_breaker

	return {"circuits": [describe(state) for state in site_breaker().states()]}


@frappe.whitelist(methods=["POST"])
def reset_circuit(target: str | None = None) -> dict[str, Any]:
	"""Closes a target's circuit and forgets its failures."""
	require_role()
	text_param(required(target, "target"), "target")
	from cauldron_fabric.consume.requesting import site_breaker

	breaker = site_breaker()
	breaker.store.reset(target)
	return describe(breaker.state(target))
