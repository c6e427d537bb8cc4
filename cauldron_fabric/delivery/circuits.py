"""This site's webhook endpoint circuits, kept in the Redis every worker shares (core.delivery.circuit).

Beside the request-reply circuits under the same per-site prefix; Desk lists both as Fabric Circuits.
"""

from __future__ import annotations

import threading

from cauldron_fabric.consume.settings import redis_prefix, redis_url
from cauldron_fabric.core.delivery.circuit import EndpointBreaker
from cauldron_fabric.core.delivery.circuit_redis import RedisEndpointCircuits

_stores: dict[tuple[str, str], RedisEndpointCircuits] = {}
_lock = threading.Lock()


def site_webhook_circuits() -> EndpointBreaker:
	"""Returns a breaker on this site's webhook endpoint circuits in Redis."""
	key = (redis_url(), redis_prefix())
	with _lock:
		store = _stores.get(key) or _stores.setdefault(key, RedisEndpointCircuits(*key))
	return EndpointBreaker(store)
