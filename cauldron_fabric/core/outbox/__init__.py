"""Outbox store adapters: ``sql`` (MariaDB table, the Event Log, written by ``statements``) and ``memory``."""

from cauldron_fabric.core.outbox.memory import MemoryOutbox, MemoryOutboxStore
from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.outbox.statements import FAILED, PENDING, PUBLISHED, RECORDED

__all__ = [
	"FAILED",
	"PENDING",
	"PUBLISHED",
	"RECORDED",
	"MemoryOutbox",
	"MemoryOutboxStore",
	"SqlOutboxStore",
]
