"""Publishing an event into the fabric from outside: n8n, scripts, the other Cauldron modules.

``POST /api/method/cauldron_fabric.api.publish.publish`` with ``Authorization: token
<api key>:<api secret>`` of a user with the Fabric Publisher (or Fabric Manager) role and a
JSON body that is either the seed envelope::

    {"id": "…", "type": "agent.task.created", "source": "synapse", "time": "2030-01-01T00:00:00Z",
     "data": {"entity": "Agent Task", "entityId": "T-1", "action": "created", "payload": {…}},
     "metadata": {"correlationId": "…", "causationId": "…"}}

or its minimal form ``{"type": …, "data": {"entity": …, "entityId": …, "payload": {…}}}``: a
missing ``id`` is generated, ``time`` is now, ``source`` is the site's event source with
``/api``, ``data.action`` is the type's last word, ``correlationId`` comes from the
``X-Correlation-ID`` header or is new. ``metadata.userId`` is always the calling user and
``tenantId`` defaults to the site. Events only this site emits (document lifecycle types of its
DocTypes, the fabric's own types such as ``approval.response``, ``system.change``,
``user.login``) and a ``source`` naming this site (other than its ``/api`` source) are refused:
consumers must be able to trust that such events come from the site itself. The event is
recorded like any other (schema check, Event Log, outbox, subscriptions) and ``{"eventId",
"type", "correlationId"}`` returned; sending the same ``id`` again records nothing and answers
for the event recorded first, with ``"duplicate": true``, so retries are safe; another event
under an ``id`` already used is refused.
Bad input answers 422 with every problem listed, never 500. A user over *Publish API calls per
user and minute* (Fabric Settings) gets 429 with ``Retry-After`` until the minute ends.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import frappe
from frappe import _

from cauldron_fabric.api.permissions import MANAGERS, require_role
from cauldron_fabric.api.ratelimit import limit_publish_calls
from cauldron_fabric.core.envelope import Envelope, is_rfc3339, new_event_id, utc_now_iso
from cauldron_fabric.core.errors import FabricError, InvalidEnvelope
from cauldron_fabric.core.markup import has_markup
from cauldron_fabric.core.naming import DOCUMENT_ACTIONS, snake_case
from cauldron_fabric.core.schema import catalog_entry
from cauldron_fabric.core.strict_json import DuplicateKey, strict_loads
from cauldron_fabric.emit.policy import current_policy

PUBLISHER = "Fabric Publisher"
# application/json, or a structured syntax suffix such as application/vnd.x+json; parameters allowed.
JSON_MEDIA_TYPE = re.compile(r"application/(?:[\w.+-]+\+)?json(?:\s*;[^\r\n]*)?\Z", re.IGNORECASE)
MAX_BODY_BYTES = 512 * 1024
KNOWN = ("id", "type", "source", "time", "data", "metadata", "specVersion", "dataContentType", "dataSchema")
IGNORED = ("cmd",)
# The types the site emits itself besides the catalog's ``core`` types and document lifecycle events.
SITE_ONLY_TYPES = ("subscription.test", "schedule.triggered")
DOMAINS_KEY = "cauldron_fabric:doctype_domains"
# The attributes (by section) the Event Log keeps in columns Desk shows; the id and type are
# checked by Envelope.from_dict for every event.
MARKUP_FREE = {
	"": ("source",),
	"data.": ("entity", "entityId", "action"),
	"metadata.": ("correlationId", "causationId", "tenantId"),
}


class InvalidEvent(frappe.ValidationError):
	"""An event the fabric cannot accept; answered with 422 Unprocessable Content."""

	http_status_code = 422


@frappe.whitelist(methods=["POST"])
def publish(
	type: Any = None,
	data: Any = None,
	id: Any = None,
	source: Any = None,
	time: Any = None,
	metadata: Any = None,
	specVersion: Any = None,
	dataContentType: Any = None,
	dataSchema: Any = None,
	**unknown: Any,
) -> dict[str, Any]:
	"""Validates an event, records it (outbox, Event Log, subscriptions) and returns its id."""
	require_role(PUBLISHER, *MANAGERS)
	limit_publish_calls()
	given = {
		"id": id,
		"type": type,
		"source": source,
		"time": time,
		"data": data,
		"metadata": metadata,
		"specVersion": specVersion,
		"dataContentType": dataContentType,
		"dataSchema": dataSchema,
	}
	body = {key: value for key, value in given.items() if value is not None}
	_refuse_duplicate_keys()
	envelope = _envelope(body, [key for key in unknown if key not in IGNORED])
	if recorded := _recorded(envelope.id):
		return _repeat(envelope, recorded)
	from cauldron_fabric.emit.recorder import record

	try:
		# Refused whatever Fabric Settings say: kept as Invalid, it would never be published
		# after the caller was told it was accepted.
		record([envelope], refuse_invalid=True)
	except FabricError as exc:
		_refuse([str(exc)])
	except Exception as exc:
		if not frappe.db.is_duplicate_entry(exc):
			raise
		# The same id arrived twice at once; the other request recorded it (and committed:
		# only then does this INSERT fail rather than wait).
		frappe.db.rollback()
		return _repeat(envelope, _recorded(envelope.id))
	return _answer(envelope)


def _refuse_duplicate_keys() -> None:
	"""Refuses a JSON request body that names a key twice in one object.

	Frappe's parser keeps the last value without a word; another reader of the same bytes (a
	gateway's check, an audit log) may have kept the first, and acted on another event.
	"""
	request = getattr(frappe.local, "request", None)
	if request is None or not (request.content_type or "").startswith("application/json"):
		return
	if not request.path.rstrip("/").endswith("/cauldron_fabric.api.publish.publish"):
		return  # called from another endpoint's code: that request's body is not this event
	try:
		strict_loads(request.get_data(cache=True))
	except DuplicateKey as exc:
		_refuse([str(exc)])
	except (ValueError, RecursionError):
		pass  # Frappe read it; what it holds is checked field by field below


def _recorded(event_id: str) -> Envelope | None:
	"""Returns the event the Event Log holds under ``event_id``, if any."""
	text = frappe.db.get_value("Event Log", {"event_id": event_id}, "envelope")
	return Envelope.from_dict(json.loads(text)) if text else None


def _repeat(envelope: Envelope, recorded: Envelope | None) -> dict[str, Any]:
	"""Answers a repeated id for the event recorded under it; refuses another event under that id.

	A retry must learn what its first attempt was answered (the correlation id it was recorded
	with, even when the retry sent another X-Correlation-ID or none); an event that only shares
	the id would otherwise be answered "duplicate" and dropped without anyone knowing. Time and
	metadata other than the caller are filled in anew by every attempt, so they are not compared.
	"""
	if recorded is None:  # deleted by retention between the INSERT and this read
		return _answer(envelope, duplicate=True)
	if _identity(recorded) != _identity(envelope):
		_refuse(
			[
				_("id {0} was already used for another event ({1}); send a new id").format(
					envelope.id, recorded.type
				)
			]
		)
	return _answer(recorded, duplicate=True)


def _identity(envelope: Envelope) -> tuple[Any, ...]:
	data = envelope.data
	payload = json.dumps(dict(data.payload), sort_keys=True, default=str)
	return (
		envelope.type,
		envelope.source,
		data.entity,
		data.entity_id,
		data.action,
		payload,
		envelope.metadata.user_id,
	)


def _envelope(body: dict[str, Any], unknown: list[str]) -> Envelope:
	"""Completes the minimal form and validates; raises InvalidEvent listing every problem."""
	from cauldron_fabric.emit.context import correlation_id

	problems = [
		_("unknown field '{0}' (fields: {1})").format(key, ", ".join(KNOWN)) for key in sorted(unknown)
	]
	for key in ("data", "metadata"):
		if isinstance(body.get(key), str):  # a form-encoded request sends objects as JSON text
			try:
				body[key] = strict_loads(body[key])
			except DuplicateKey as exc:
				problems.append(f"'{key}': {exc}")
			except (ValueError, RecursionError) as exc:
				problems.append(_("'{0}' is not a JSON object ({1})").format(key, exc))
	data = body.get("data")
	metadata = body.get("metadata")
	if metadata is None:
		metadata = {}
	elif not isinstance(metadata, dict):
		# Dropped, the caller's correlation and causation ids would be lost without a word.
		problems.append(_("'metadata' must be an object"))
		metadata = {}
	if isinstance(data, dict) and "action" not in data and isinstance(body.get("type"), str):
		data = {**data, "action": body["type"].rsplit(".", 1)[-1]}
	complete = {
		"id": new_event_id(),
		"source": f"{current_policy().source}/api",
		"time": utc_now_iso(),
		**body,
		"data": data,
		"metadata": {
			"correlationId": metadata.get("correlationId") or correlation_id(),
			"causationId": metadata.get("causationId"),
			"userId": frappe.session.user,
			"tenantId": metadata.get("tenantId") or frappe.local.site,
		},
	}
	# Bytes as stored and sent (UTF-8), not characters of \u-escaped JSON: an emoji is 4 bytes,
	# not the 12 characters of its escaped surrogate pair.
	try:
		size = len(json.dumps(complete, default=str, ensure_ascii=False, allow_nan=False).encode())
	except UnicodeEncodeError:
		# A \ud800 escape alone (half of a surrogate pair) is JSON text no UTF-8 can store:
		# told it held NaN, the caller looked for a number.
		size = 0
		problems.append(
			_(
				"the event holds text that is not valid Unicode (a lone surrogate escape such as \\ud800); "
				"send each character whole, or both halves of its surrogate pair"
			)
		)
	except ValueError:
		# Frappe's request parser reads NaN, Infinity and 1e999 (too large: infinite); JSON has
		# no such values, and the event would have gone out with null in their place.
		size = 0
		problems.append(
			_(
				"the event holds NaN or an infinite number (such as 1e999), which JSON has no value for; "
				"send a number, null or a string"
			)
		)
	if size > MAX_BODY_BYTES:
		problems.append(
			_("the event is larger than {0} KiB; send a reference instead").format(MAX_BODY_BYTES // 1024)
		)
	try:
		envelope = Envelope.from_dict(complete)
	except InvalidEnvelope as exc:
		problems += exc.problems
	else:
		# Consumed events are read leniently; what the site sends on must be CloudEvents' time.
		if not is_rfc3339(envelope.time):
			problems.append(
				_("'time' must be an RFC 3339 timestamp such as 2026-11-27T14:00:00Z, not {0}").format(
					repr(envelope.time)
				)
			)
	content_type = body.get("dataContentType")
	if isinstance(content_type, str) and not JSON_MEDIA_TYPE.match(content_type):
		# The payload is a JSON object whatever this says: a consumer trusting another media
		# type could not read it.
		problems.append(
			_("'dataContentType' must be a JSON media type such as application/json, not {0}").format(
				repr(content_type)
			)
		)
	problems += _impersonation_problems(complete)
	problems += _markup_problems(complete)
	if problems:
		_refuse(problems)
	return envelope


def _markup_problems(body: dict[str, Any]) -> list[str]:
	"""Returns the attributes Desk shows (Event Log columns) that hold ``<`` or ``>``.

	Desk renders these columns as HTML, trusting Frappe to have sanitized them on save; the
	outbox writes them with one INSERT, so a publisher's markup would run in the browser of
	whoever opens the Event Log. Frappe refuses the same characters in document names.
	"""
	sections = {"": body, "data.": body.get("data"), "metadata.": body.get("metadata")}
	return [
		_("'{0}' may not contain < or >").format(prefix + key)
		for prefix, keys in MARKUP_FREE.items()
		if isinstance(sections[prefix], dict)
		for key in keys
		if isinstance(text := sections[prefix].get(key), str) and has_markup(text)
	]


def _impersonation_problems(body: dict[str, Any]) -> list[str]:
	"""Returns why the event would pass for one the site emitted itself (no problem: empty)."""
	problems = []
	event_type, source = body.get("type"), body.get("source")
	site_source = current_policy().source
	if isinstance(source, str) and site_source and source != f"{site_source}/api":
		if names_site(source, site_source):
			problems.append(_("'source' {0} is this site's own; leave it out").format(source))
	if isinstance(event_type, str):
		problems += site_type_problems(event_type)
	return problems


def names_site(source: str, site_source: str) -> bool:
	"""Tells whether ``source`` names the site's own event source, in any spelling of its URI.

	A consumer reads the source as a URI: scheme and host are case-insensitive, and a query,
	fragment, port, user or trailing dot of the host leave the host the same, so comparing the
	text alone let ``FRAPPE://SITE`` or ``frappe://site?x`` pass for the site.
	"""
	source = source.strip()
	try:
		mine, theirs = urlsplit(site_source), urlsplit(source)
	except ValueError:  # "frappe://[x": no URI a consumer could read a host from
		mine = theirs = urlsplit("")
	if mine.scheme and mine.hostname:
		return theirs.scheme.lower() == mine.scheme.lower() and (theirs.hostname or "").rstrip(
			"."
		) == mine.hostname.rstrip(".")
	# A source without a host (urn:cauldron:erp): its own text, in any case, or below it.
	source, site_source = source.lower(), site_source.lower()
	return source.rstrip("/") == site_source or source.startswith(site_source + "/")


def site_type_problems(event_type: str) -> list[str]:
	"""Returns why ``event_type`` is the site's own to emit (no problem: empty).

	Consumers trust these types as the site's word: an approval.response decides a request,
	a todo.updated says a document changed. Only the site's own code emits them.
	"""
	entry = catalog_entry(event_type)
	domain, _dot, action = event_type.rpartition(".")
	if (entry and entry.owner == "core") or event_type in SITE_ONLY_TYPES:
		return [_("events of type {0} are emitted by this site only").format(event_type)]
	if action in DOCUMENT_ACTIONS and domain in doctype_domains():
		return [_("{0} is a document event of this site; only the site emits it").format(event_type)]
	return []


def doctype_domains() -> frozenset[str]:
	"""Returns the event type domains of this site's DocTypes (``sales_order`` for Sales Order).

	Cached in Redis; a saved DocType drops the cache (forget_doctype_domains), and it expires
	after ten minutes for DocTypes deleted meanwhile (Frappe runs no hooks when it deletes one).
	"""
	domains = frappe.cache.get_value(DOMAINS_KEY)
	if domains is None:
		domains = sorted({snake_case(name) for name in frappe.get_all("DocType", pluck="name")})
		frappe.cache.set_value(DOMAINS_KEY, domains, expires_in_sec=600)
	return frozenset(domains)


def forget_doctype_domains(doc=None, method: str | None = None) -> None:
	"""Drops the cached DocType domains (DocType on_update: a new DocType's events are the site's)."""
	frappe.cache.delete_value(DOMAINS_KEY)


def _refuse(problems: list[str]) -> None:
	frappe.throw(
		_("The event was not accepted: {0}.").format("; ".join(problems)),
		InvalidEvent,
		title=_("Invalid event"),
	)


def _answer(envelope: Envelope, duplicate: bool = False) -> dict[str, Any]:
	# The response's X-Correlation-ID names the conversation the event is in (the body's
	# metadata.correlationId, or the recorded event's for a repeat), not a new one.
	frappe.local.fabric_correlation_id = envelope.metadata.correlation_id
	answer = {
		"eventId": envelope.id,
		"type": envelope.type,
		"correlationId": envelope.metadata.correlation_id,
	}
	if duplicate:
		answer["duplicate"] = True
	return answer
