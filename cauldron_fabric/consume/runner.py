"""Running the core consumer for a site: settings, hooked handlers, tracking, dead letters, status.

The consumer works on ``frappe.db``: each event's handlers, its Processed Event mark and the
events their changes emit are one transaction, committed before the offset (or ack).
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable, Mapping, Sequence

import frappe

from cauldron_fabric.api.publish import MAX_BODY_BYTES
from cauldron_fabric.consume.dead_letters import record_dead_letter
from cauldron_fabric.consume.handlers import load_handler_table
from cauldron_fabric.consume.settings import ConsumerSettings, load_consumer_settings, redis_prefix, redis_url
from cauldron_fabric.consume.status import ConsumerReporter
from cauldron_fabric.consume.tracking import FrappeTrackingStore
from cauldron_fabric.consume.validation import validate_consumed
from cauldron_fabric.core.consumer import Consumer, ConsumerCounts, ConsumerOptions, HandlerTable, open_source
from cauldron_fabric.core.consumer.crashes_redis import RedisCrashCounter
from cauldron_fabric.core.consumer.handlers import Handler
from cauldron_fabric.core.errors import ConfigurationError, RetryableError
from cauldron_fabric.core.markup import has_markup
from cauldron_fabric.core.naming import topic_for
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.core.sqlsession import is_connection_error
from cauldron_fabric.emit.policy import clear_policy, current_policy
from cauldron_fabric.services.sitedb import safe_rollback

SETTINGS_RECHECK_SECONDS = 10
GROUP_LENGTH = 140  # Processed Event's and Dead Letter's consumer_group columns
OUTAGE_BACKOFF = Backoff(base=1.0, factor=2.0, maximum=30.0)


def default_topics(settings: ConsumerSettings, table: HandlerTable) -> list[str]:
	"""Returns what to consume when no topics are given: the handlers' patterns, as topics or keys.

	On Kafka each pattern's domain (its first word) names the topic under the topic naming rule,
	which therefore may use only ``{domain}``; on RabbitMQ the patterns are the binding keys.
	"""
	patterns = table.patterns
	if settings.broker == "rabbitmq":
		return patterns
	fields = {name for _, name, _, _ in string.Formatter().parse(settings.topic_template) if name}
	wild = [p for p in patterns if p.split(".", 1)[0] in ("*", "**")]
	if fields - {"domain"} or wild:
		raise ConfigurationError(
			"Cannot tell which Kafka topics to consume from the handlers' patterns"
			+ (
				f" ({', '.join(wild)} cover every domain)."
				if wild
				else f" under the naming rule {settings.topic_template!r}."
			),
			hint="Pass --topics T1,T2 or --pattern '^cauldron\\..*'.",
		)
	return sorted(
		{topic_for(settings.topic_template, p.split(".", 1)[0] + ".events", "", None) for p in patterns}
	)


def checked_group(group: str) -> str:
	"""Returns the group's name; raises ConfigurationError for one its records cannot keep exactly."""
	where = "--group, or Consumer group in Fabric Settings"
	if has_markup(group):
		# A name must stay exact: Frappe's save rewrites markup, so the group's Dead Letters
		# would name another group, be filed again at every redelivery and retried to nobody.
		raise ConfigurationError(
			f"Consumer group {group!r} holds < or >, which a consumer group's name may not contain.",
			hint=f"Choose a group name without < or > ({where}).",
		)
	if len(group) > GROUP_LENGTH:
		# Every Processed Event and Dead Letter would fail, and every message wait for ever.
		raise ConfigurationError(
			f"Consumer group {group[:40]!r}… is {len(group)} characters long; at most {GROUP_LENGTH} are allowed.",
			hint=f"Choose a shorter group name ({where}).",
		)
	return group


def build_consumer(
	group: str | None = None,
	topics: Sequence[str] = (),
	pattern: str | None = None,
	broker: str | None = None,
	extra_handlers: Mapping[str, Handler | Sequence[Handler]] | None = None,
	broker_options: Mapping | None = None,
) -> tuple[Consumer, ConsumerSettings, list[str]]:
	"""Builds a consumer of this site from Fabric Settings and the hooked handlers."""
	settings = load_consumer_settings(broker)
	group = checked_group(group or settings.group)
	table = load_handler_table(settings.handler_user, extra_handlers)
	if not len(table):
		raise ConfigurationError(
			"No handlers are registered, so a consumer would only skip events.",
			hint="Register handlers under fabric_handlers in an app's hooks.py.",
		)
	chosen = list(topics) or ([] if pattern else default_topics(settings, table))
	options = ConsumerOptions(
		group=group,
		max_attempts=settings.max_attempts,
		crash_limit=settings.crash_limit,
		max_kept_replies_bytes=MAX_BODY_BYTES,  # as large as an event the site takes
		source=current_policy().source or f"frappe://{frappe.local.site}",
	)
	source = open_source(
		settings.broker_url,
		options,
		chosen,
		pattern=pattern,
		broker_options={
			**settings.broker_options,
			"allowed_reply_addresses": settings.reply_addresses,
			**(broker_options or {}),
		},
	)
	consumer = Consumer(
		source,
		table,
		FrappeTrackingStore(),
		options,
		validate=validate_consumed,
		on_dead_letter=record_dead_letter,
		crashes=RedisCrashCounter(redis_url(), redis_prefix()),
	)
	return consumer, settings, chosen or [pattern or ""]


class SettingsWatch:
	"""Tells, at most every ``SETTINGS_RECHECK_SECONDS``, whether Fabric Settings changed for consumers."""

	def __init__(self, settings: ConsumerSettings, broker: str | None):
		self.settings, self.broker = settings, broker
		self.changed = False
		self._checked = time.monotonic()

	def __call__(self) -> bool:
		if not self.changed and time.monotonic() - self._checked >= SETTINGS_RECHECK_SECONDS:
			self._checked = time.monotonic()
			try:
				self.changed = load_consumer_settings(self.broker) != self.settings
			except ConfigurationError:
				self.changed = True  # the rebuild says what is wrong
			except Exception as exc:
				if not is_connection_error(exc):
					raise
				frappe.logger("cauldron_fabric").warning("lost the site's database: %s", exc)
			finally:
				safe_rollback()  # end the read so the next check sees new settings
				# The handlers' own events follow the settings too (a broker configured since
				# start turns recording into publishing); this process outlives any request.
				clear_policy()
		return self.changed


def run_consumer_for(
	group: str | None = None,
	topics: Sequence[str] = (),
	pattern: str | None = None,
	broker: str | None = None,
	should_stop: Callable[[], bool] = lambda: False,
	max_seconds: float | None = None,
	stop_when_idle: bool = False,
	extra_handlers: Mapping[str, Handler | Sequence[Handler]] | None = None,
	broker_options: Mapping | None = None,
	on_start: Callable[[], None] | None = None,
	on_outage: Callable[[Exception], None] | None = None,
) -> ConsumerCounts:
	"""Consumes for this site until stopped; returns what it did. Commits as it goes.

	Handlers run as the Fabric Settings handler user; the session's user is restored after. When
	Fabric Settings change (broker, handler user, attempts…) the consumer is rebuilt with them.
	``on_start()`` is called once, when the first consumer was built: settings it refuses never
	get that far. ``on_outage(exc)`` is called when the broker cannot be reached at a (re)build,
	once per outage: the consumer waits for it.
	"""
	started, totals = time.monotonic(), ConsumerCounts()
	previous_user = frappe.session.user if getattr(frappe.local, "session", None) else "Administrator"
	outages = 0
	while True:
		try:
			consumer, settings, chosen = build_consumer(
				group, topics, pattern, broker, extra_handlers, broker_options
			)
		except RetryableError as exc:
			# The broker is down at start: wait for it instead of exiting (an outage delays, never drops).
			outages += 1
			frappe.logger("cauldron_fabric").warning("consumer cannot start yet: %s", exc)
			if outages == 1 and on_outage is not None:
				on_outage(exc)
			frappe.db.rollback()
			if _wait(OUTAGE_BACKOFF.delay(outages), should_stop, started, max_seconds):
				return totals
			continue
		outages = 0
		if on_start is not None:
			on_start()
			on_start = None
		watch = SettingsWatch(settings, broker)
		reporter = ConsumerReporter(consumer.options.group, settings.broker, chosen)
		remaining = None if max_seconds is None else max(0.0, max_seconds - (time.monotonic() - started))
		frappe.set_user(settings.handler_user)
		try:
			consumer.run(
				lambda watch=watch: should_stop() or watch(), remaining, stop_when_idle, on_round=reporter
			)
		finally:
			try:
				consumer.close()
			finally:
				reporter.remove()  # a stopped consumer leaves no status behind to look alive
				safe_rollback()
				frappe.set_user(previous_user)
		totals = totals + consumer.stats.totals()
		if not watch.changed or should_stop():
			return totals
		frappe.logger("cauldron_fabric").info("Fabric Settings changed: rebuilding the consumer")


def _wait(seconds: float, should_stop: Callable[[], bool], started: float, max_seconds: float | None) -> bool:
	"""Sleeps up to ``seconds``; returns True when told to stop or out of time meanwhile."""
	deadline = time.monotonic() + seconds
	while time.monotonic() < deadline:
		if should_stop() or (max_seconds is not None and time.monotonic() - started >= max_seconds):
			return True
		time.sleep(0.2)
	return should_stop()
