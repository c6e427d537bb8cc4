"""Running the core delivery worker for a site: settings, destinations, handlers, the loop.

The worker claims and settles deliveries on its own database connection (row locks, READ
COMMITTED), never on ``frappe.db``, which it uses only to read subscriptions and settings and
to file dead letters. Destinations come from Fabric Settings: Kafka and RabbitMQ transports,
the webhook sender with the admin's allow-list, and the handlers apps register in their hooks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import frappe
from frappe.utils import cint, now_datetime

from cauldron_fabric.core.delivery import (
	DEAD,
	DeliveryEngine,
	DeliveryHeartbeat,
	DeliveryReport,
	DeliveryWorker,
	Destinations,
	SqlDeliveryStore,
	WebhookSender,
	idle_claim_limit,
)
from cauldron_fabric.core.delivery.overdue import LONGEST_ATTEMPT_SECONDS
from cauldron_fabric.core.errors import FabricError, RetryableError
from cauldron_fabric.core.transports import open_transport
from cauldron_fabric.core.wakeup import RedisWaker
from cauldron_fabric.delivery.circuits import site_webhook_circuits
from cauldron_fabric.delivery.connections import webhook_address_policy
from cauldron_fabric.delivery.dead_letters import record_dead_letters
from cauldron_fabric.delivery.gone import disable_gone_subscriptions
from cauldron_fabric.delivery.handlers import close_handler_connections, handler_functions
from cauldron_fabric.delivery.recording import delivery_channel
from cauldron_fabric.delivery.status import forget_worker, worker_heartbeat
from cauldron_fabric.delivery.subscriptions import (
	Loaded,
	current_version,
	load_subscriptions,
	show_problems,
)
from cauldron_fabric.services.errors import log_error_without_values
from cauldron_fabric.services.heartbeats import process_name
from cauldron_fabric.services.relay import kafka_connection, rabbitmq_connection, site_db_connector
from cauldron_fabric.services.sitedb import recovered_from_lost_connection

SETTINGS_RECHECK_SECONDS = 10
IDLE_WAIT_SECONDS = 1.0
DEFAULT_BATCH_SIZE = 100
log = logging.getLogger("cauldron_fabric.delivery")


@dataclass(frozen=True)
class DeliverySettings:
	"""What delivery workers take from Fabric Settings; equal settings mean no rebuild."""

	kafka: tuple[str, dict[str, Any]] | None
	rabbitmq: tuple[str, dict[str, Any]] | None
	allow_list: str
	batch_size: int
	# An attempt running longer is logged and listed as overdue in the worker's heartbeat.
	overdue_after: int = LONGEST_ATTEMPT_SECONDS
	handler_user: str = "Administrator"  # who in-app handlers run as


def load_delivery_settings(batch_size: int | None = None) -> DeliverySettings:
	"""Reads Fabric Settings afresh."""
	frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
	settings = frappe.get_single("Fabric Settings")
	return DeliverySettings(
		kafka=kafka_connection(settings),
		rabbitmq=rabbitmq_connection(settings),
		allow_list=settings.webhook_allowed_networks or "",
		batch_size=min(max(batch_size or cint(settings.delivery_batch_size) or DEFAULT_BATCH_SIZE, 1), 5000),
		# Unset on a site not migrated since the field came: its default.
		overdue_after=max(cint(settings.handler_overdue_seconds) or LONGEST_ATTEMPT_SECONDS, 1),
		handler_user=settings.handler_user or "Administrator",
	)


class SubscriptionBook:
	"""The site's compiled subscriptions (with secrets), reloaded when their version changes."""

	def __init__(self):
		self.version: Any = object()
		self.subscriptions: dict[str, Loaded] = {}
		self.loaded_at = 0.0

	def refresh(self) -> None:
		"""Reloads when a subscription changed since the last load."""
		version = current_version()
		if version != self.version:
			self._load(version)

	def get(self, name: str) -> Loaded | None:
		"""Returns a subscription; one created since the last load is looked up before giving up."""
		if name not in self.subscriptions and time.monotonic() - self.loaded_at > 1:
			self._load(current_version())
		return self.subscriptions.get(name)

	def _load(self, version: Any) -> None:
		frappe.db.rollback()  # a fresh snapshot: see what other connections committed
		self.subscriptions = load_subscriptions(with_secrets=True)
		self.version, self.loaded_at = version, time.monotonic()
		show_problems(self.subscriptions)


class DeliveryRuntime:
	"""A worker with its store, engine and destinations, built from one set of settings."""

	def __init__(self, settings: DeliverySettings, heartbeat: DeliveryHeartbeat):
		self.settings = settings
		self.transports = _open_transports(settings)
		self.destinations = Destinations(
			transports=self.transports,
			handlers=handler_functions(frappe.local.site, settings.handler_user),
			sender=WebhookSender(_address_policy(settings.allow_list)),
		)
		self.book = SubscriptionBook()
		self.store = SqlDeliveryStore(
			site_db_connector(), clock=now_datetime, claim_idle_seconds=idle_claim_limit(settings.batch_size)
		)
		# The heartbeat beats while the engine waits, so a handler that holds the worker shows.
		self.engine = DeliveryEngine(
			self.destinations,
			clock=now_datetime,
			overdue_after=settings.overdue_after,
			on_waiting=heartbeat.beat,
			circuits=site_webhook_circuits(),
		)
		heartbeat.running = self.engine.running
		self.worker = DeliveryWorker(
			self.store, self.book.get, self.engine, batch_size=settings.batch_size, on_settled=_file_dead
		)

	def cycle(self) -> DeliveryReport:
		"""Delivers one batch; a lost database connection is reported, not raised."""
		self.book.refresh()
		try:
			return self.worker.deliver_due()
		except RetryableError as exc:
			log.warning("delivery cycle failed, will retry: %s", exc)
			return DeliveryReport(error=str(exc))

	def close(self) -> None:
		"""Finishes the attempts under way, settles them and closes every connection."""
		try:
			_file_dead(self.worker.drain())
		except Exception:
			# Their deliveries are due again when their leases end: nothing is lost.
			log.warning("could not settle the webhook requests in flight", exc_info=True)
		self.engine.close()
		close_handler_connections()
		self.store.close()
		self.destinations.close()
		for transport in self.transports.values():
			transport.close()


def _open_transports(settings: DeliverySettings) -> dict[str, Any]:
	transports = {}
	for kind, connection in (("kafka", settings.kafka), ("amqp", settings.rabbitmq)):
		if connection is None:
			continue
		try:
			transports[kind] = open_transport(*connection)
		except FabricError:
			# Deliveries to it wait (and retry) until the setting is fixed.
			log_error_without_values(f"Cauldron Fabric: cannot open the {kind} transport for deliveries")
	return transports


def _address_policy(allow_list: str):
	try:
		return webhook_address_policy(allow_list)
	except FabricError:
		log_error_without_values(
			"Cauldron Fabric: the webhook allow-list is invalid; allowing no private address"
		)
		return webhook_address_policy("")


def _file_dead(attempts) -> None:
	if any(a.gone for a in attempts):
		disable_gone_subscriptions(attempts)
	dead = [a.seq for a in attempts if a.status == DEAD]
	if dead:
		record_dead_letters(dead)


def run_delivery_worker(
	should_stop: Callable[[], bool] = lambda: False,
	max_seconds: float | None = None,
	stop_when_idle: bool = False,
	batch_size: int | None = None,
	name: str | None = None,
) -> None:
	"""Delivers for this site until stopped (a batch in hand is always finished), following settings.

	The worker reports its heartbeat under ``name`` (default ``host:pid``). A worker named after
	its process drops its entry when it stops; a named one (the scheduler's runs, each a new
	process) leaves its last outcome there for the next run to overwrite.
	"""
	heartbeat = worker_heartbeat(name or process_name())
	waker = RedisWaker(frappe.conf.redis_cache or "redis://127.0.0.1:6379", delivery_channel())
	started = time.monotonic()
	runtime: DeliveryRuntime | None = None
	next_check = 0.0
	try:
		while not should_stop():
			elapsed = time.monotonic() - started
			if max_seconds is not None and elapsed >= max_seconds:
				break
			try:
				if time.monotonic() >= next_check:
					settings = load_delivery_settings(batch_size)
					frappe.db.rollback()
					if runtime is None or settings != runtime.settings:
						if runtime is not None:
							runtime.close()
						runtime = DeliveryRuntime(settings, heartbeat)
					next_check = time.monotonic() + SETTINGS_RECHECK_SECONDS
				report = runtime.cycle()
			except Exception as exc:
				# The site's own connection (settings, subscriptions, filing dead letters) went
				# away: an outage delays the deliveries, it must not stop the worker.
				if not recovered_from_lost_connection(exc):
					raise
				report = DeliveryReport(error=str(exc))
			heartbeat.count(report)
			if report.claimed == 0 or report.error:
				if stop_when_idle and not report.error:
					break
				remaining = IDLE_WAIT_SECONDS if max_seconds is None else max_seconds - elapsed
				waker.wait(max(0.0, min(IDLE_WAIT_SECONDS, remaining)))
	finally:
		if runtime is not None:
			runtime.close()
		heartbeat.beat(force=True) if name else forget_worker(process_name())
		waker.close()


def has_due_deliveries() -> bool:
	"""Tells whether any delivery is due now (one indexed lookup)."""
	return bool(
		frappe.db.sql(
			"SELECT 1 FROM `tabEvent Delivery` WHERE status = 'Pending' AND next_attempt_at <= %s LIMIT 1",
			(now_datetime(),),
		)
	)
