"""Outbox store adapters: ``sql`` (MariaDB table, the Event Log) and ``memory``."""

from cauldron_fabric.core.outbox.memory import MemoryOutbox, MemoryOutboxStore
from cauldron_fabric.core.outbox.sql import FAILED, PENDING, PUBLISHED, RECORDED, SqlOutboxStore

__all__ = [
	"FAILED",
	"PENDING",
	"PUBLISHED",
	"RECORDED",
	"MemoryOutbox",
	"MemoryOutboxStore",
	"SqlOutboxStore",
]
