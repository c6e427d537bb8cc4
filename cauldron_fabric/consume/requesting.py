"""Request-reply for a site: one requester per process and broker, circuits shared through Redis.

Web workers keep their requester (its reply reader thread, its connections) between requests;
it is rebuilt when Fabric Settings change. Circuit states live under the site's Redis prefix,
so every worker and every consumer of the site sees the same circuits.
"""

from __future__ import annotations

import atexit
import threading

import frappe
from frappe.utils import cint, flt

from cauldron_fabric.consume.settings import ConsumerSettings, load_consumer_settings, redis_prefix, redis_url
from cauldron_fabric.core.consumer import CircuitBreaker, CircuitPolicy, Requester, open_requester
from cauldron_fabric.core.consumer.circuit_redis import RedisCircuitStore
from cauldron_fabric.core.consumer.messages import DEFAULT_REPLY_TOPIC
from cauldron_fabric.emit.policy import current_policy

_requesters: dict[tuple, Requester] = {}
_stores: dict[tuple[str, str], RedisCircuitStore] = {}
_lock = threading.Lock()


def circuit_policy() -> CircuitPolicy:
	"""Returns the circuit policy of Fabric Settings."""
	settings = frappe.get_cached_doc("Fabric Settings")
	timeout = flt(settings.request_timeout_seconds) or 10.0
	return CircuitPolicy(
		failure_threshold=max(cint(settings.circuit_failure_threshold) or 5, 1),
		window_seconds=max(cint(settings.circuit_window_seconds) or 60, 1),
		open_seconds=max(cint(settings.circuit_open_seconds) or 30, 1),
		probe_seconds=max(timeout, 1.0),
	)


def site_breaker(policy: CircuitPolicy | None = None) -> CircuitBreaker:
	"""Returns a breaker on this site's circuits in Redis."""
	key = (redis_url(), redis_prefix())
	with _lock:
		store = _stores.get(key) or _stores.setdefault(key, RedisCircuitStore(*key))
	return CircuitBreaker(store, policy or circuit_policy())


def site_requester(broker: str | None = None) -> Requester:
	"""Returns this process's requester for the site's broker, built on first use or after a change."""
	settings = load_consumer_settings(broker)
	key = (frappe.local.site, _fingerprint(settings))
	breaker = site_breaker(settings.circuit)
	with _lock:
		requester = _requesters.get(key)
		if requester is None:
			for old_key in [k for k in _requesters if k[0] == key[0]]:
				_requesters.pop(old_key).close()
			requester = _requesters[key] = open_requester(
				settings.broker_url,
				source=current_policy().source or f"frappe://{frappe.local.site}",
				breaker=breaker,
				default_timeout=settings.request_timeout,
				topic_template=settings.topic_template,
				broker_options={**settings.broker_options, "reply_topic": DEFAULT_REPLY_TOPIC},
			)
	return requester


def _fingerprint(settings: ConsumerSettings) -> tuple:
	return (
		settings.broker_url,
		settings.topic_template,
		settings.request_timeout,
		settings.circuit,
		tuple(sorted((k, str(v)) for k, v in settings.broker_options.items())),
	)


@atexit.register
def close_requesters() -> None:
	"""Closes every requester of this process."""
	with _lock:
		while _requesters:
			_requesters.popitem()[1].close()
