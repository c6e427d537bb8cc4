"""Event Subscription documents turned into the core's compiled subscriptions, and kept fresh.

Every process keeps the compiled subscriptions of each site in memory. A change to any
subscription publishes a version token in Redis after its transaction commits (and drops this
process's copy at once); readers compare their token with Redis at most once per request
(and every few seconds in long-running processes), so routing never queries the database
per event and sees a committed change in the next request.

The token names the committed state itself (each subscription's name and last change), and a
reader keeps the token of the state it loaded, read in the same snapshot: a request whose
transaction began before the change loads the old state under the old token, so the next
request loads again instead of keeping the old state under the new token for good.

The token carries a number drawn from a Redis counter after the commit and before the state is
read (above the published token's number, should Redis have evicted the counter), and Redis
keeps the token with the highest number: when two saves commit at once, the later Redis write
may carry the earlier state, and processes would then reload at every check until the next
change. The highest number was drawn last, so its state includes every commit.

A stored subscription that no longer compiles (a later version refuses what an earlier one
saved) is loaded as a BrokenSubscription: it keeps routing, its deliveries become dead
letters naming the problem, and its ``problem`` field shows the problem in Desk until a save
that compiles clears it. The delivery workers and every migrate write that field, never a
save that routes an event: a write there could wait on a lock or fail that save.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from typing import Any

import frappe
from frappe.utils import cint, flt

from cauldron_fabric.core.delivery import (
	BrokenSubscription,
	Subscription,
	SubscriptionIndex,
	SubscriptionInvalid,
	build_broken_subscription,
	build_index,
	build_subscription,
)
from cauldron_fabric.core.delivery.transform import BINARY, ENVELOPE, FIELDS, STRUCTURED, TEMPLATE
from cauldron_fabric.core.markup import plain
from cauldron_fabric.delivery.credentials import DOCTYPE, HEADERS_DOCTYPE, webhook_credentials
from cauldron_fabric.emit.held import when_transaction_ends
from cauldron_fabric.services.errors import log_error_without_values

VERSION_KEY = "cauldron_fabric:subscriptions:version"
SEQUENCE_KEY = "cauldron_fabric:subscriptions:sequence"
# Draws the next number from KEYS[1], above the number of the token at KEYS[2]: Frappe's cache
# Redis evicts keys (allkeys-lru), and the counter, used only at a change, can go while the
# token, read at every check, stays. Counting again from 1 below it, no change would win.
NEXT_NUMBER = """
local current = tonumber(string.match(redis.call('GET', KEYS[2]) or '', '^(%d+):') or '0')
local number = redis.call('INCR', KEYS[1])
if number <= current then
	number = current + 1
	redis.call('SET', KEYS[1], number)
end
return number
"""
# Sets KEYS[1] to ARGV[2] unless it holds a token numbered ARGV[1] or higher ("number:state").
PUBLISH_NEWER = """
local current = tonumber(string.match(redis.call('GET', KEYS[1]) or '', '^(%d+):') or '0')
if tonumber(ARGV[1]) > current then
	redis.call('SET', KEYS[1], ARGV[2])
	return 1
end
return 0
"""
RECHECK_SECONDS = 5.0
PAYLOAD_FORMS = {
	"Envelope": ENVELOPE,
	"CloudEvents structured": STRUCTURED,
	"CloudEvents binary": BINARY,
	"Jinja template": TEMPLATE,
	"Field selection": FIELDS,
}
LOADED_FIELDS = (
	"name",
	"enabled",
	"event_types",
	"condition",
	"destination_type",
	"webhook_url",
	"webhook_method",
	"webhook_timeout",
	"kafka_topic",
	"rabbitmq_exchange",
	"rabbitmq_routing_key",
	"handler",
	"payload_form",
	"template",
	"template_content_type",
	"selected_fields",
	"max_attempts",
	"initial_delay",
	"max_delay",
	"jitter",
	"keep_order",
	"rate_limit",
	"burst",
	"problem",
)
Loaded = Subscription | BrokenSubscription

# site -> (version token, compiled subscriptions by name, routing index)
_compiled: dict[str, tuple[Any, dict[str, Loaded], SubscriptionIndex]] = {}


def lines(text: str | None) -> list[str]:
	"""Returns the non-empty lines (or comma-separated items) of a multi-line field."""
	return [part.strip() for line in (text or "").splitlines() for part in line.split(",") if part.strip()]


def is_empty(value: Any) -> bool:
	"""Tells whether a number field was left empty (None, or "" from a form): a 0 is not."""
	return value is None or value == ""


def number(doc: Any, fieldname: str, default: float) -> Any:
	"""Returns a number field's value, or ``default`` when it is empty: a typed 0 stays 0.

	The core then refuses a 0 that cannot work (attempts, timeout) with its reason, instead of
	a 0 silently meaning the default.
	"""
	value = doc.get(fieldname)
	return default if is_empty(value) else value


def fill_empty_numbers(doc: Any, fieldnames: Iterable[str]) -> None:
	"""Sets each of ``fieldnames`` left empty to its DocType default, so that empty means the default.

	An emptied number field arrives as None and Frappe would store it as 0, which means 0 (or is
	refused where 0 cannot work): its default is stored instead, and shown in the form.
	"""
	for fieldname in fieldnames:
		if is_empty(doc.get(fieldname)):
			field = doc.meta.get_field(fieldname)
			doc.set(fieldname, (cint if field.fieldtype == "Int" else flt)(field.default))


def destination_address(doc: Any) -> str:
	"""Returns the core's destination address for the subscription's destination fields."""
	kind = doc.get("destination_type") or "Webhook"
	if kind == "Kafka topic":
		return f"kafka:{(doc.get('kafka_topic') or '').strip()}"
	if kind == "RabbitMQ exchange":
		key = (doc.get("rabbitmq_routing_key") or "").strip() or "{type}"
		exchange = (doc.get("rabbitmq_exchange") or "").strip()
		return f"amqp:{exchange}/{key}" if exchange else f"amqp:{key}"
	if kind == "In-app handler":
		return f"handler:{(doc.get('handler') or '').strip()}"
	return (doc.get("webhook_url") or "").strip()


def compile_subscription(
	doc: Any, secret: str | None = None, headers: Iterable[tuple[str, str]] = ()
) -> Subscription:
	"""Compiles a subscription document (or loaded row); raises the core's SubscriptionInvalid."""
	webhook = (doc.get("destination_type") or "Webhook") == "Webhook"
	burst = int(doc.get("burst") or 0)
	return build_subscription(
		doc.get("name") or doc.get("subscription_name") or "",
		destination_address(doc),
		event_types=lines(doc.get("event_types")),
		doctypes=[row.get("document_type") for row in doc.get("document_types") or []],
		condition=doc.get("condition"),
		payload_form=PAYLOAD_FORMS.get(doc.get("payload_form") or "Envelope", doc.get("payload_form")),
		template=doc.get("template") or "",
		fields=[line.strip() for line in (doc.get("selected_fields") or "").splitlines() if line.strip()],
		content_type=(doc.get("template_content_type") or "").strip() or None,
		method=doc.get("webhook_method") or "POST",
		headers=list(headers) if webhook else None,
		timeout=float(number(doc, "webhook_timeout", 10)),
		secret=secret if webhook else None,
		max_attempts=int(number(doc, "max_attempts", 8)),
		initial_delay=float(number(doc, "initial_delay", 5)),
		max_delay=float(number(doc, "max_delay", 3600)),
		jitter=float(number(doc, "jitter", 0.2)),
		ordered=bool(doc.get("keep_order")),
		rate_limit=float(doc.get("rate_limit") or 0),
		burst=burst or None,
		enabled=bool(doc.get("enabled")),
	)


def stored_fields() -> list[str]:
	"""Returns the LOADED_FIELDS that the table has now (a missing one reads as None).

	A migrate syncs DocTypes one at a time, and each is a system.change whose routing loads the
	subscriptions: until Event Subscription's own turn, its table lacks the fields this version
	added. Frappe caches the column list and drops it when it alters the table.
	"""
	columns = set(frappe.db.get_table_columns(DOCTYPE))
	return [field for field in LOADED_FIELDS if field in columns]


def load_subscriptions(with_secrets: bool = False) -> dict[str, Loaded]:
	"""Compiles every subscription of the site; one that no longer compiles is a BrokenSubscription.

	Without secrets (routing needs none) this is three queries; with them, one more per webhook
	secret and header, which only delivery workers pay, once per change.
	"""
	rows = frappe.get_all(DOCTYPE, fields=stored_fields(), order_by="creation asc")
	children = frappe.get_all(
		"Fabric DocType",
		filters={"parenttype": DOCTYPE, "parentfield": "document_types"},
		fields=["parent", "document_type"],
	)
	headers = frappe.get_all(
		HEADERS_DOCTYPE, filters={"parenttype": DOCTYPE}, fields=["name", "parent", "header"], order_by="idx"
	)
	compiled: dict[str, Loaded] = {}
	for row in rows:
		row["document_types"] = [c for c in children if c.parent == row.name]
		webhook = row.destination_type == "Webhook"
		rows_headers = [h for h in headers if h.parent == row.name] if webhook else None
		compiled[row.name] = _compile_stored(row, rows_headers, with_secrets)
	return compiled


def _compile_stored(row: Any, headers: list[Any] | None, with_secrets: bool) -> Loaded:
	"""Compiles a stored subscription with its header rows unless None, their values and secret
	only ``with_secrets``; never raises: what no longer compiles is a BrokenSubscription.

	The rows' names are checked either way, so a migrate shows a row the sender would write
	itself as the delivery workers refuse it.
	"""
	try:
		if headers is not None and with_secrets:
			secret, pairs = webhook_credentials(row.name, headers)
		else:
			secret, pairs = None, [(h.header, "") for h in headers or []]
		return compile_subscription(row, secret, pairs)
	except Exception as exc:
		if not isinstance(exc, SubscriptionInvalid) and row.problem is None:
			log_error_without_values(f"Event Subscription {row.name} no longer compiles")
		problem = (
			" ".join(exc.problems) if isinstance(exc, SubscriptionInvalid) else f"{type(exc).__name__}: {exc}"
		)
		return build_broken_subscription(
			row.name,
			problem,
			event_types=lines(row.event_types),
			doctypes=[c.document_type for c in row.document_types],
			condition=row.condition,
			ordered=bool(row.keep_order),
			enabled=bool(row.enabled),
		)


def note_problems(subscriptions: dict[str, Loaded]) -> None:
	"""Writes each subscription's problem (empty once it compiles) where the stored one differs.

	Without touching ``modified``: the routing version stays, and a form open on it can still
	be saved. Nor through a save that sanitizes: the problem quotes the condition or template,
	and Desk renders it as HTML (see plain).
	"""
	stored = dict(frappe.get_all(DOCTYPE, fields=["name", "problem"], as_list=True))
	for name, subscription in subscriptions.items():
		problem = plain(subscription.problem) if isinstance(subscription, BrokenSubscription) else None
		if (stored.get(name) or None) != problem:
			frappe.db.set_value(DOCTYPE, name, "problem", problem, update_modified=False)


def check_subscriptions() -> None:
	"""Loads every subscription and shows which no longer compile (after every migrate).

	Then tells every process to load them again: processes of the new version may have loaded
	them before the migrate ended, and its patches rewrite stored subscriptions without
	changing their version (a 0 that meant the default, loaded before as broken).
	"""
	if frappe.db.table_exists(DOCTYPE):
		note_problems(load_subscriptions())
		subscriptions_changed()


def show_problems(subscriptions: dict[str, Loaded]) -> None:
	"""Notes the problems of freshly loaded subscriptions and commits (delivery workers).

	A failure only delays showing them, until the next load: it must not stop deliveries.
	"""
	try:
		note_problems(subscriptions)
		frappe.db.commit()
	except Exception:
		frappe.db.rollback()
		frappe.logger("cauldron_fabric").warning("could not note subscription problems", exc_info=True)


def routing_index() -> SubscriptionIndex:
	"""Returns this site's index of enabled subscriptions, rebuilt only when one changed."""
	site = frappe.local.site
	cached = _compiled.get(site)
	checked = getattr(frappe.local, "fabric_subscriptions_checked", 0.0)
	now = time.monotonic()
	if cached is not None and now - checked < RECHECK_SECONDS:
		return cached[2]
	version = current_version()
	frappe.local.fabric_subscriptions_checked = now
	if cached is not None and cached[0] == state_of(version):
		return cached[2]
	# Before the first migrate that creates the tables (or while it runs) nothing routes.
	ready = frappe.db.table_exists(DOCTYPE) and frappe.db.table_exists("Event Delivery")
	# Read in the snapshot of the load: it may predate the change Redis announces.
	loaded = stored_version() if ready and version is not None else state_of(version)
	subscriptions = load_subscriptions() if ready else {}
	index = build_index(subscriptions.values())
	_compiled[site] = (loaded, subscriptions, index)
	return index


def stored_version() -> str:
	"""Returns the token of the subscriptions as this transaction sees them (names, last changes)."""
	rows = frappe.db.sql(f"SELECT name, modified FROM `tab{DOCTYPE}` ORDER BY name")
	digest = hashlib.sha256("\n".join(f"{name}\t{modified}" for name, modified in rows).encode())
	return digest.hexdigest()[:24]


def current_version() -> Any:
	"""Returns the site's subscription version token from Redis (None before any change)."""
	try:
		token = frappe.cache.get(frappe.cache.make_key(VERSION_KEY))
		return token.decode() if isinstance(token, bytes) else token
	except Exception:
		# Without Redis, rebuild at every check (at most every RECHECK_SECONDS): stale routing
		# would silently miss deliveries, a few extra queries only cost time.
		return object()


def state_of(token: Any) -> Any:
	"""Returns the state part of a version token (``number:state``), or a token of another kind as is."""
	return token.partition(":")[2] or token if isinstance(token, str) else token


def subscriptions_changed() -> None:
	"""Drops this process's copy now and bumps the version for every process after commit."""
	_compiled.pop(frappe.local.site, None)
	frappe.local.fabric_subscriptions_checked = 0.0
	frappe.db.after_commit.add(_bump_version)
	# A routing index built in this transaction holds its uncommitted subscriptions: not an
	# after-rollback callback, which none runs when a before_commit callback refuses the commit.
	when_transaction_ends(_forget_local)


def _bump_version() -> None:
	_forget_local()
	try:
		# The number is drawn after the commit and the state read after the number, so the token
		# with the highest number names a state that includes every change committed before it.
		version_key = frappe.cache.make_key(VERSION_KEY)
		sequence = frappe.cache.eval(NEXT_NUMBER, 2, frappe.cache.make_key(SEQUENCE_KEY), version_key)
		token = f"{sequence}:{stored_version()}"
		frappe.cache.eval(PUBLISH_NEWER, 1, version_key, sequence, token)
	except Exception:
		frappe.logger("cauldron_fabric").warning("could not publish a subscription change", exc_info=True)


def _forget_local() -> None:
	_compiled.pop(frappe.local.site, None)
	frappe.local.fabric_subscriptions_checked = 0.0


def registered_handlers() -> dict[str, list[str]]:
	"""Returns the handler paths apps register under ``fabric_handlers``, with their patterns."""
	paths: dict[str, list[str]] = {}
	hooks = frappe.get_hooks("fabric_handlers") or {}
	for pattern, dotted in hooks.items() if isinstance(hooks, dict) else []:
		for path in [dotted] if isinstance(dotted, str) else dotted or []:
			paths.setdefault(path, []).append(pattern)
	return paths
