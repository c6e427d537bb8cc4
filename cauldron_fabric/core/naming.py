"""The naming rule for event types and the topic naming rule.

Event types have the source document's ``event.domain.action`` shape: lower-case words joined
by dots, the first word the domain, the last the action.

* Document lifecycle: ``<doctype>.<action>``, the DocType in snake case
  (``Sales Invoice`` becomes ``sales_invoice``, ``ToDo`` becomes ``todo``) and the action one of
  ``DOCUMENT_ACTIONS`` (``sales_invoice.submitted``, ``todo.updated_after_submit``).
* Business transactions: ``business.transaction`` for submitted and cancelled transactions.
* Users: ``user.login`` and ``user.logout``.
* System: ``system.change`` for DocTypes, settings and permissions (a user's roles included);
  ``system.status`` for the scheduler's heartbeat.
* Events from other modules keep their names from the source document (``agent.task.created``).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable

from cauldron_fabric.core.errors import ConfigurationError

DOCUMENT_ACTIONS = (
	"created",
	"updated",
	"submitted",
	"cancelled",
	"updated_after_submit",
	"deleted",
	"renamed",
)
BUSINESS_TRANSACTION = "business.transaction"
USER_LOGIN = "user.login"
USER_LOGOUT = "user.logout"
SYSTEM_CHANGE = "system.change"
SYSTEM_STATUS = "system.status"

_NON_WORD = re.compile(r"[^a-z0-9]+")
_TOPIC_ILLEGAL = re.compile(r"[^a-zA-Z0-9._-]+")
TOPIC_NAME = re.compile(r"^(?!\.\.?\Z)[A-Za-z0-9._-]{1,249}\Z")
TOPIC_NAME_RULE = "letters, digits, '.', '_' and '-', at most 249 (Kafka refuses '.' and '..')"
TOPIC_PLACEHOLDERS = frozenset({"domain", "type", "entity", "tenant"})
DEFAULT_TOPIC_TEMPLATE = "cauldron.{domain}"
MAX_TOPIC_LENGTH = 249
_SPEC_WIDTH = re.compile(r"^(?:.?[<>=^])?[-+ ]?z?#?0?(\d+)")  # the width of a format spec


def snake_case(name: str) -> str:
	"""Returns ``name`` as lower snake case: ``Sales Invoice`` becomes ``sales_invoice``."""
	return _NON_WORD.sub("_", name.lower()).strip("_") or "unnamed"


# Every document event asks this of its DocType: kept rather than run through the regex each time.
@functools.lru_cache(maxsize=4096)
def document_event_type(doctype: str, action: str) -> str:
	"""Returns the event type of a document lifecycle action, e.g. ``sales_invoice.submitted``."""
	if action not in DOCUMENT_ACTIONS:
		raise ValueError(f"unknown document action {action!r}; expected one of {', '.join(DOCUMENT_ACTIONS)}")
	return f"{snake_case(doctype)}.{action}"


def domain_of(event_type: str) -> str:
	"""Returns the first word of an event type, its domain."""
	return event_type.split(".", 1)[0]


def validate_topic_template(template: str) -> None:
	"""Raises ConfigurationError when a topic template uses an unknown placeholder or is empty."""
	if not template or not template.strip():
		raise ConfigurationError(
			"The topic naming rule is empty.", hint="Use for example 'cauldron.{domain}'."
		)
	try:
		parsed = [(name, spec) for _, name, spec, _ in string.Formatter().parse(template) if name is not None]
	except ValueError as exc:
		raise ConfigurationError(f"The topic naming rule {template!r} is malformed ({exc}).") from exc
	fields = {name for name, _ in parsed}
	unknown = fields - TOPIC_PLACEHOLDERS
	if unknown:
		raise ConfigurationError(
			f"The topic naming rule uses unknown placeholder(s) {', '.join(sorted(unknown))}.",
			hint=f"Allowed: {', '.join('{' + p + '}' for p in sorted(TOPIC_PLACEHOLDERS))}.",
		)
	_check_formatting(template, [(name, spec) for name, spec in parsed if spec])
	if not fields and not _TOPIC_ILLEGAL.sub("_", template).strip("._"):
		# topic_for would have to replace the whole name with cauldron.events.
		raise ConfigurationError(
			f"The topic naming rule {template!r} names no topic Kafka accepts ({TOPIC_NAME_RULE}).",
			hint="Use for example 'cauldron.{domain}'.",
		)


def _check_formatting(template: str, specs: list[tuple[str, str]]) -> None:
	"""Raises ConfigurationError when formatting the placeholders fails, so the relay never does.

	A conversion or format spec (``{domain!x}``, ``{domain:d}``) passes the placeholder check yet
	makes ``str.format`` raise for every event; a placeholder inside a spec depends on each event;
	a width pads the name with characters Kafka refuses and, huge, takes gigabytes to build.
	"""
	for name, spec in specs:
		if "{" in spec:
			raise ConfigurationError(
				f"The topic naming rule {template!r} puts a placeholder inside {{{name}:...}}.",
				hint="Write placeholders side by side, e.g. 'cauldron.{tenant}.{domain}'.",
			)
		width = _SPEC_WIDTH.match(spec)
		if width and int(width.group(1)) > MAX_TOPIC_LENGTH:
			raise ConfigurationError(
				f"The topic naming rule {template!r} pads {{{name}}} wider than a topic name "
				f"({MAX_TOPIC_LENGTH} characters).",
				hint="Write placeholders bare, e.g. 'cauldron.{domain}'.",
			)
	try:
		topic_for(template, "sales_invoice.submitted", "Sales Invoice", None)
	except ValueError as exc:
		raise ConfigurationError(
			f"The topic naming rule {template!r} cannot be filled in ({exc}).",
			hint="Write placeholders bare, e.g. 'cauldron.{domain}'.",
		) from exc


def invalid_topic_names(names: Iterable[str]) -> list[str]:
	"""Returns the names Kafka would refuse as topics: see TOPIC_NAME_RULE."""
	return [name for name in names if not TOPIC_NAME.match(name)]


def topic_for(template: str, event_type: str, entity: str, tenant: str | None) -> str:
	"""Returns the Kafka topic for an event under a naming template, made legal for Kafka."""
	name = template.format(
		domain=domain_of(event_type),
		type=event_type,
		entity=snake_case(entity),
		tenant=snake_case(tenant or "default"),
	)
	name = _TOPIC_ILLEGAL.sub("_", name).strip("._") or "cauldron.events"
	return name[:MAX_TOPIC_LENGTH]


def template_keeps_entity_order(template: str) -> bool:
	"""Tells whether every event of one entity lands in the same topic under this template.

	Templates using ``{type}`` split one document's events over several topics, so their
	relative order is no longer guaranteed to consumers.
	"""
	return "{type}" not in template
