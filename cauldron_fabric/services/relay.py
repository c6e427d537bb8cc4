"""Running the core relay for a site: settings, database connection, transport, status.

The relay reads and settles the outbox on its own database connection (READ COMMITTED, row
locks), never on ``frappe.db``, so a long publish never holds a user transaction open.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import frappe
import pymysql
from frappe.utils import cint, get_system_timezone

from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.outbox.sql import CLAIM_IDLE_SECONDS, SqlOutboxStore
from cauldron_fabric.core.ports import ConnectionReport, Transport
from cauldron_fabric.core.relay import Relay, RelayOptions
from cauldron_fabric.core.relay_batches import RelayReport
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.core.wakeup import RedisWaker
from cauldron_fabric.services.heartbeats import process_name, remove_heartbeat, write_heartbeat
from cauldron_fabric.services.sitedb import recovered_from_lost_connection
from cauldron_fabric.services.wakeups import relay_channel, wake

STATUS_KEY = "cauldron_fabric:relays"
SETTINGS_RECHECK_SECONDS = 10
OUTAGE_WAIT_SECONDS = 1.0
# An idle relay whose status shows an error asks the broker this often whether it is back.
RECOVERY_CHECK_SECONDS = 10.0
RECOVERY_CHECK_TIMEOUT = 2.0
# What the command's terminal adds to a relay's error: nothing is lost meanwhile.
WAIT_NOTE = "events wait and are retried"


@dataclass(frozen=True)
class RelaySettings:
	"""Everything a relay needs from Fabric Settings; equal settings mean no rebuild."""

	transport_url: str
	topic_template: str
	batch_size: int
	transport_options: dict[str, Any] = field(default_factory=dict)


def load_relay_settings() -> RelaySettings | None:
	"""Reads Fabric Settings afresh; None when no broker is configured (embedded mode).

	Kafka bootstrap servers and a RabbitMQ URL each turn publishing on; with both, every event
	goes to both (RabbitMQ's routing key is the event type, on the configured exchange).
	"""
	frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
	settings = frappe.get_single("Fabric Settings")
	kafka, rabbitmq = kafka_connection(settings), rabbitmq_connection(settings)
	if kafka is None and rabbitmq is None:
		return None
	transport_url, options = kafka or rabbitmq
	if kafka and rabbitmq:
		transport_url, options = "fanout://", {"legs": (kafka, rabbitmq)}
	return RelaySettings(
		transport_url=transport_url,
		topic_template=settings.topic_template or "cauldron.{domain}",
		batch_size=min(max(cint(settings.relay_batch_size) or 500, 1), 10000),
		transport_options=options,
	)


def kafka_connection(settings) -> tuple[str, dict[str, Any]] | None:
	"""Returns the Kafka transport URL and options of Fabric Settings, or None without servers."""
	servers = ",".join(s.strip() for s in (settings.bootstrap_servers or "").split(",") if s.strip())
	if not servers:
		return None
	options = {
		"security_protocol": settings.security_protocol or "PLAINTEXT",
		"sasl_mechanism": settings.sasl_mechanism,
		"sasl_username": settings.sasl_username,
		"sasl_password": settings.get_password("sasl_password", raise_exception=False)
		if settings.sasl_password
		else None,
		"ssl_ca_pem": (settings.ssl_ca or "").strip() or None,
		"client_id": settings.client_id or "cauldron-fabric",
		"auto_create_topics": bool(cint(settings.auto_create_topics)),
		"topic_partitions": cint(settings.topic_partitions) or 3,
		"topic_replication": cint(settings.topic_replication) or 1,
		"message_timeout_ms": cint(settings.message_timeout_ms) or 10000,
	}
	return f"kafka://{servers}", options


def rabbitmq_connection(settings) -> tuple[str, dict[str, Any]] | None:
	"""Returns the RabbitMQ URL (with the password field put in) and options, or None without a URL."""
	from cauldron_fabric.delivery.connections import rabbitmq_url_with_password

	url = (settings.rabbitmq_url or "").strip()
	if not url:
		return None
	password = (
		settings.get_password("rabbitmq_password", raise_exception=False)
		if settings.rabbitmq_password
		else None
	)
	options = {"exchange": (settings.rabbitmq_exchange or "").strip() or "cauldron.events"}
	return rabbitmq_url_with_password(url, password), options


def open_relay_transport(url: str, options: dict[str, Any]):
	"""Opens the relay's transport: RabbitMQ routed by event type, both brokers for ``fanout://``."""
	from cauldron_fabric.core.transports.fanout import FanoutTransport, RoutedTransport, route_by_event_type

	if url == "fanout://":
		return FanoutTransport([open_relay_transport(*leg) for leg in options["legs"]])
	if url.startswith("amqp"):
		# Not mandatory: like a Kafka topic nobody reads, a type nobody binds is no error.
		transport = open_transport(url, {**options, "mandatory": False})
		return RoutedTransport(transport, route_by_event_type(options["exchange"]))
	transport = open_transport(url, options)
	return transport


def site_clock() -> Callable[[], dt.datetime]:
	"""Returns a clock in the site's time zone that works outside Frappe's request context.

	The relay settles on a background thread, where frappe.local (and so now_datetime) is
	not bound; the zone is read once here instead.
	"""
	zone = ZoneInfo(get_system_timezone())
	return lambda: dt.datetime.now(zone).replace(tzinfo=None)


def site_db_connector() -> Callable[[], Any]:
	"""Returns a function that opens a new connection to this site's database."""
	connection_settings = frappe.db.get_connection_settings()
	return lambda: pymysql.connect(**connection_settings)


def claim_idle_seconds(settings: RelaySettings) -> int:
	"""Returns how long a claim may sit idle before the database frees its rows (see CLAIM_IDLE_SECONDS).

	A claim waits through a few acknowledgement waits (the batches' ahead, its own, its deferred
	messages') and backoffs; a long Kafka acknowledgement timeout lengthens each, and the limit
	keeps a wide margin over them (a claim rolled back under a live relay is published twice).
	"""
	legs = settings.transport_options.get("legs") or [(settings.transport_url, settings.transport_options)]
	ack_seconds = max(cint(leg_options.get("message_timeout_ms")) for _, leg_options in legs) / 1000
	defaults = RelayOptions()
	wait = max(defaults.publish_timeout, ack_seconds + 5)
	return max(CLAIM_IDLE_SECONDS, int(3 * (3 * wait + defaults.backoff.maximum)))


def build_relay(settings: RelaySettings, on_cycle: Callable[[RelayReport], None] | None = None) -> Relay:
	"""Builds a relay on its own database connection and a transport from the settings."""
	connect = site_db_connector()
	clock = site_clock()
	idle = claim_idle_seconds(settings)
	# Four sessions: one claims the next batch while two batches wait for the broker and
	# one settles (see Pipeline).
	sessions = [SqlOutboxStore(connect, clock=clock, claim_idle_seconds=idle) for _ in range(4)]
	transport = open_relay_transport(settings.transport_url, settings.transport_options)
	options = RelayOptions(
		batch_size=settings.batch_size, topic_template=settings.topic_template, backoff=Backoff()
	)
	return Relay(sessions[0], transport, options, clock=clock, on_cycle=on_cycle, more_stores=sessions[1:])


def check_connection(timeout: float = 5.0) -> ConnectionReport:
	"""Connects with the saved settings and reports what was found."""
	frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
	kafka = kafka_connection(frappe.get_single("Fabric Settings"))
	if kafka is None:
		return ConnectionReport(
			False, "No bootstrap servers are set: the fabric records events but publishes none to Kafka."
		)
	transport = open_transport(*kafka)
	try:
		return transport.check(timeout)
	finally:
		transport.close()


def wake_relays() -> None:
	"""Wakes this site's idle relays; a lost wake-up only delays until their next poll."""
	wake(relay_channel())


def _gist(error: str) -> str:
	"""The kind of a relay error: its text up to the first detail (a colon or a parenthesis)."""
	return error.split(":", 1)[0].split("(", 1)[0].strip()


class StatusReporter:
	"""Publishes a relay's heartbeat and last outcome to Redis, at most once a second."""

	def __init__(self, name: str, say: Callable[[str], None] | None = None):
		self.name = name
		# Told when the relay's error begins, changes kind, or ends (the command's terminal).
		self.say = say
		self.totals = {"published": 0, "retrying": 0, "failed": 0}
		self.last_error: str | None = None
		self.last_report: RelayReport | None = None
		# The running relay's transport, through which an idle relay sees a broker come back.
		self.transport: Transport | None = None
		self._last_write = 0.0
		self._last_recovery_check = 0.0

	@property
	def idle(self) -> bool:
		"""Tells whether the last cycle found nothing due to publish."""
		return self.last_report is not None and self.last_report.claimed == 0 and not self.last_report.error

	def __call__(self, report: RelayReport) -> None:
		self.last_report = report
		for key in self.totals:
			self.totals[key] += getattr(report, key)
		before = self.last_error
		if report.error:
			self.last_error = report.error
		elif report.published or self._broker_back(report):
			self.last_error = None
		if self.say is not None and before != self.last_error:
			self._tell(before)
		if time.monotonic() - self._last_write >= 1:
			self.write()

	def _tell(self, before: str | None) -> None:
		"""Says that publishing stopped working, or works again; an error only reworded is not news."""
		if self.last_error is None:
			self.say(f"fabric relay for {frappe.local.site}: publishing again")
		elif before is None or _gist(before) != _gist(self.last_error):
			# An unreachable broker's error already ends with this in its hint: said once.
			note = "" if WAIT_NOTE in self.last_error else f" ({WAIT_NOTE})"
			self.say(f"fabric relay for {frappe.local.site}: {self.last_error}{note}")

	def _broker_back(self, report: RelayReport) -> bool:
		"""Tells whether an idle relay with an error standing finds its broker reachable again.

		Only a publish cleared the error: a relay that outlived an outage with nothing due (its
		events waiting out their backoff, or taken by another relay) showed the outage as current
		for as long as no event came. Asked at most every RECOVERY_CHECK_SECONDS.
		"""
		if self.last_error is None or report.claimed or self.transport is None:
			return False
		if time.monotonic() - self._last_recovery_check < RECOVERY_CHECK_SECONDS:
			return False
		self._last_recovery_check = time.monotonic()
		return self.transport.check(RECOVERY_CHECK_TIMEOUT).ok

	def write(self) -> None:
		"""Stores the current status under the relay's name."""
		self._last_write = time.monotonic()
		write_heartbeat(STATUS_KEY, self.name, {"last_error": self.last_error, **self.totals})

	def remove(self) -> None:
		"""Drops the relay's entry: a relay that stopped is not running any more."""
		remove_heartbeat(STATUS_KEY, self.name)


def _built_or_reported(settings: RelaySettings, reporter: StatusReporter) -> Relay | None:
	"""Builds the relay, or reports why these settings cannot work and returns None."""
	reporter.transport = None
	try:
		relay = build_relay(settings, reporter)
	except ConfigurationError as exc:
		_report_unusable(reporter, exc)
		return None
	reporter.transport = relay.transport
	return relay


def _report_unusable(reporter: StatusReporter, exc: ConfigurationError) -> None:
	"""Puts a setting the broker client refused in the relay's status, where Fabric Settings show it.

	No retry cures it and stopping the relay would not either (a supervisor restarts it into
	the same error): the relay waits for the settings to change, and its events stay Pending.
	"""
	frappe.logger("cauldron_fabric").error("the relay cannot use Fabric Settings: %s", exc)
	reporter(RelayReport(error=f"Fabric Settings cannot be used: {exc}"))
	reporter.write()


def _wait_unless_stopped(waker: RedisWaker, seconds: float, stop: Callable[[], bool]) -> None:
	"""Waits for a wake-up or ``seconds``, a second at a time, so SIGTERM is heeded promptly.

	A signal does not cut a wait for Redis short: a relay idle for want of a broker took up to
	SETTINGS_RECHECK_SECONDS to stop.
	"""
	deadline = time.monotonic() + seconds
	while not stop() and (left := deadline - time.monotonic()) > 0:
		if waker.wait(min(1.0, left)):
			return


def run_relay_for(
	should_stop: Callable[[], bool] = lambda: False,
	max_seconds: float | None = None,
	stop_when_idle: bool = False,
	batch_size: int | None = None,
	name: str | None = None,
	say: Callable[[str], None] | None = None,
) -> None:
	"""Relays for this site until stopped, following changes to Fabric Settings.

	``say`` (the command's terminal) is told when publishing stops working and when it works again.

	The relay reports its status under ``name`` (default ``host:pid``). A relay named after its
	process drops its entry when it stops; a named one (the scheduler's runs, each a new
	process) leaves its last outcome there for the next run to overwrite.
	"""
	reporter = StatusReporter(name or process_name(), say)
	stop = (lambda: should_stop() or reporter.idle) if stop_when_idle else should_stop
	waker = RedisWaker(frappe.conf.redis_cache or "redis://127.0.0.1:6379", relay_channel())
	started = time.monotonic()
	relay, current = None, None
	try:
		while not stop() and (max_seconds is None or time.monotonic() - started < max_seconds):
			try:
				settings = load_relay_settings()
				frappe.db.rollback()  # end the read so the next check sees new settings
			except Exception as exc:
				# The site's connection went away (failover, restart, wait_timeout): the relay's
				# own sessions may be fine, and an outage delays events, it never stops the relay.
				if not recovered_from_lost_connection(exc):
					raise
				waker.wait(OUTAGE_WAIT_SECONDS)
				continue
			if settings and batch_size:
				settings = RelaySettings(**{**asdict(settings), "batch_size": batch_size})
			if settings != current:
				if relay is not None:
					relay.close()
				relay, current = None, settings
				if settings:
					relay = _built_or_reported(settings, reporter)
			if relay is None:
				# No broker, or settings it refuses: nothing to do until Fabric Settings change.
				reporter.write()
				if stop_when_idle:
					return
			budget = SETTINGS_RECHECK_SECONDS
			if max_seconds is not None:
				budget = min(budget, max(0.0, max_seconds - (time.monotonic() - started)))
			if relay is None:
				_wait_unless_stopped(waker, budget, stop)
				continue
			try:
				relay.run(stop, waker, max_seconds=budget)
			except ConfigurationError as exc:
				relay.close()
				relay = None
				_report_unusable(reporter, exc)
	finally:
		reporter.write() if name else reporter.remove()
		if relay is not None:
			relay.close()
		waker.close()
