"""Heartbeats of the fabric's long-running processes (relays, delivery workers) in Redis hashes.

Each process writes its status under its name in its kind's hash (``write_heartbeat``), at
most about once a second; ``read_heartbeats`` marks the silent ones stale and forgets those
silent for an hour, whose process was killed without removing its entry.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import frappe
from frappe.utils import get_datetime, now_datetime

STALE_SECONDS = 60
# The scheduler's safety nets report once a minute (their runs share one host:scheduler entry):
# judged by a long-running process's threshold they looked silent for part of every minute.
SAFETY_NET_STALE_SECONDS = 150
# A process silent this long was killed without cleaning up after itself: forget it.
FORGET_SECONDS = 3600


def process_name() -> str:
	"""Returns ``host:pid``, how a long-running process is named in the status."""
	return f"{socket.gethostname()}:{os.getpid()}"


def safety_net_name() -> str:
	"""Returns ``host:scheduler``, the one status entry the scheduler's runs share on a host."""
	return f"{socket.gethostname()}:scheduler"


def write_heartbeat(key: str, name: str, status: dict[str, Any]) -> None:
	"""Stores ``status`` with the current time as ``heartbeat`` under ``name``; Redis down is no error."""
	try:
		frappe.cache.hset(key, name, json.dumps({"heartbeat": now_datetime().isoformat(), **status}))
	except Exception:
		pass


def remove_heartbeat(key: str, name: str) -> None:
	"""Drops a process's entry: a process that stopped is not running any more."""
	try:
		frappe.cache.hdel(key, name)
	except Exception:
		pass


def read_heartbeats(key: str) -> list[dict[str, Any]]:
	"""Returns every entry of ``key`` with its name and ``stale`` flag, newest heartbeat first."""
	entries = []
	for raw_name, value in (frappe.cache.hgetall(key) or {}).items():
		name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
		status = json.loads(value) if isinstance(value, str | bytes) else dict(value)
		age = (now_datetime() - get_datetime(status["heartbeat"])).total_seconds()
		if age > FORGET_SECONDS:
			frappe.cache.hdel(key, name)
			continue
		limit = SAFETY_NET_STALE_SECONDS if name.endswith(":scheduler") else STALE_SECONDS
		entries.append({"name": name, **status, "stale": age > limit})
	return sorted(entries, key=lambda entry: entry["heartbeat"], reverse=True)
