"""A webhook request left in flight past its batch (a lease) is settled once, whatever happens to the
worker's database connection meanwhile. Real HTTP receivers and a real MariaDB queue."""

import time

import pytest
from delivery_fabric import FAST, Fabric

from cauldron_fabric.core.delivery.records import DELIVERED
from cauldron_fabric.core.delivery.store_sql import SqlDeliveryStore
from cauldron_fabric.core.delivery.subscription import build_subscription, plan_deliveries
from cauldron_fabric.core.delivery.worker import DeliveryWorker
from cauldron_fabric.core.errors import RetryableError
from cauldron_fabric.testing.http_receiver import Reply
from conftest import connect_db, make_envelope


def kill_connection(store: SqlDeliveryStore) -> None:
	"""Ends the store's connection on the server, as a database restart or failover does."""
	thread_id = store.connection.thread_id()
	admin = connect_db()
	with admin.cursor() as cur:
		cur.execute(f"KILL CONNECTION {int(thread_id)}")
	admin.close()


def test_a_landed_request_is_settled_once_though_the_database_was_lost_when_it_landed(
	receiver, delivery_table
):
	receiver.reply("/hook", Reply(200, delay=0.5))
	fabric = Fabric([build_subscription("slow", receiver.url(), event_types=["*"], timeout=1, **FAST)])
	queue = SqlDeliveryStore(connect_db, table=delivery_table[0], sequence=delivery_table[1])
	queue.enqueue(plan_deliveries(make_envelope(), fabric.index))
	queue.commit()
	store = SqlDeliveryStore(connect_db, table=delivery_table[0], sequence=delivery_table[1])
	worker = DeliveryWorker(store, fabric.subscriptions.get, fabric.engine, patience=0.1, lease_margin=0.2)
	assert worker.deliver_due().in_flight == 1
	receiver.wait_for("/hook", 1, timeout=5)
	time.sleep(0.6)  # the request has landed
	kill_connection(store)
	with pytest.raises(RetryableError):
		worker.deliver_due()  # the cycle that would settle it finds the connection gone
	assert worker.in_flight == 1, "the outcome is kept until it is written"
	deadline = time.monotonic() + 3  # past the lease (1 s + 0.2 s): a dropped outcome is resent by then
	while time.monotonic() < deadline:
		worker.deliver_due()
		time.sleep(0.05)
	row = queue.get(1)
	assert (row.status, row.attempts) == (DELIVERED, 1)
	assert len(receiver.on("/hook")) == 1, "sent once"
	store.close()
	queue.close()
	fabric.close()
