"""Fixtures of the core suite: a real Kafka-protocol broker and a real MariaDB database."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pymysql
import pytest
import redis

from cauldron_fabric.core.consumer.circuit_redis import RedisCircuitStore
from cauldron_fabric.core.delivery.addresses import AddressPolicy
from cauldron_fabric.core.delivery.store_sql import SqlDeliveryStore
from cauldron_fabric.core.delivery.store_sql import create_table_sql as delivery_table_sql
from cauldron_fabric.core.delivery.webhook import WebhookSender
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.outbox.statements import create_table_sql
from cauldron_fabric.testing.events import document_event
from cauldron_fabric.testing.http_receiver import Receiver
from cauldron_fabric.testing.kafka_broker import KafkaBroker

DB = {
	"host": os.environ.get("FABRIC_TEST_DB_HOST", "127.0.0.1"),
	"port": int(os.environ.get("FABRIC_TEST_DB_PORT", "3306")),
	"user": os.environ.get("FABRIC_TEST_DB_USER", "root"),
	"password": os.environ.get("FABRIC_TEST_DB_PASSWORD", ""),
}
DB_NAME = os.environ.get("FABRIC_TEST_DB_NAME", "fabric_core_test")


def connect_db(database: str | None = DB_NAME):
	"""Opens a new PyMySQL connection to the test database."""
	return pymysql.connect(**DB, database=database, charset="utf8mb4", autocommit=False)


def connect_db_without_backslash_escapes():
	"""Opens a connection whose sql_mode has NO_BACKSLASH_ESCAPES: a backslash in a string
	literal is an ordinary character there, and ``\\'`` ends the literal."""
	conn = connect_db()
	with conn.cursor() as cur:
		cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
	return conn


@pytest.fixture(scope="session")
def kafka():
	"""One broker for the session; tests use their own topics."""
	with KafkaBroker() as broker:
		yield broker


@pytest.fixture(scope="session")
def database():
	"""Creates the test database once."""
	conn = connect_db(None)
	with conn.cursor() as cur:
		cur.execute(
			f"CREATE DATABASE IF NOT EXISTS `{DB_NAME}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
		)
	conn.close()
	return DB_NAME


REDIS_URL = "redis://127.0.0.1:6379/0"


@contextmanager
def redis_circuits():
	"""Yields a function opening RedisCircuitStores on one fresh key prefix; deletes its keys after."""
	prefix = f"fabric-test:{uuid.uuid4().hex[:8]}:"
	try:
		yield lambda: RedisCircuitStore(REDIS_URL, prefix)
	finally:
		client = redis.Redis.from_url(REDIS_URL)
		for key in client.scan_iter(prefix + "*"):
			client.delete(key)
		client.close()


@contextmanager
def scratch_table(kind: str, create_table_sql, store_class):
	"""Creates a fresh DocType-shaped table and sequence with the store's indexes; drops them after."""
	suffix = uuid.uuid4().hex[:8]
	table, sequence = f"tab{kind} {suffix}", f"{kind.lower().replace(' ', '_')}_{suffix}_seq"
	conn = connect_db()
	with conn.cursor() as cur:
		for statement in create_table_sql(table, sequence):
			cur.execute(statement)
	conn.commit()
	store = store_class(connect_db, table=table, sequence=sequence)
	store.ensure_indexes()
	store.close()
	try:
		yield table, sequence
	finally:
		with conn.cursor() as cur:
			cur.execute(f"DROP TABLE IF EXISTS `{table}`")
			cur.execute(f"DROP SEQUENCE IF EXISTS `{sequence}`")
		conn.commit()
		conn.close()


@pytest.fixture
def outbox_table(database):
	"""Creates a fresh outbox table and sequence shaped like the Event Log; drops them after."""
	with scratch_table("Event Log", create_table_sql, SqlOutboxStore) as names:
		yield names


# Text that SQL literals and the driver's %-formatting could mangle: quotes, backslashes,
# percent signs and format markers, control characters, non-ASCII text.
TRICKY_TEXT = "it's \\ \"quoted\" 100% %s %(x)s \n\t\x00\x1a ü 漢字 🚀 \\' '' \\\\"


def make_envelope(
	entity: str = "ToDo", entity_id: str = "T-1", action: str = "updated", **payload
) -> Envelope:
	"""Builds a document event the way the Frappe layer does, its payload given as keywords."""
	return document_event(entity, entity_id, action, payload)


# Webhook tests send to receivers on loopback, which the sender refuses unless allowed.
LOOPBACK = AddressPolicy.from_allow_list(["127.0.0.0/8", "::1/128"])
BODY = b'{"id":"evt-1","type":"sales_invoice.submitted","data":{"grand_total":1200}}'


@pytest.fixture
def receiver():
	"""A local HTTP receiver (see testing.http_receiver), stopped after the test."""
	server = Receiver().start()
	yield server
	server.stop()


@pytest.fixture
def delivery_table(database):
	"""The names of a scratch Event Delivery table and its sequence, dropped after the test."""
	with scratch_table("Event Delivery", delivery_table_sql, SqlDeliveryStore) as names:
		yield names


@pytest.fixture
def sender():
	"""A WebhookSender allowed to reach loopback, closed after the test."""
	client = WebhookSender(LOOPBACK)
	yield client
	client.close()
