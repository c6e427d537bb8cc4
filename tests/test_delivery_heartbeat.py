"""A delivery worker's heartbeat: totals, last error, attempts in flight and overdue ones."""

import logging
import threading

from cauldron_fabric.core.delivery.addresses import AddressPolicy
from cauldron_fabric.core.delivery.destinations import Destinations
from cauldron_fabric.core.delivery.engine import DeliveryEngine
from cauldron_fabric.core.delivery.heartbeat import DeliveryHeartbeat
from cauldron_fabric.core.delivery.store_memory import MemoryDeliveries
from cauldron_fabric.core.delivery.subscription import build_index, build_subscription, plan_deliveries
from cauldron_fabric.core.delivery.webhook import WebhookSender
from cauldron_fabric.core.delivery.worker import DeliveryReport, DeliveryWorker
from cauldron_fabric.testing.http_receiver import Receiver, Reply
from conftest import make_envelope

FAST = {"initial_delay": 0.2, "max_delay": 1.0, "jitter": 0.0}


def test_a_worker_held_by_an_overdue_handler_still_beats_and_names_it_until_it_returns():
	# The worker waits for its batch while the handler runs: without beats from that wait it fell
	# silent, and an operator could not tell a stuck handler from a dead worker.
	release = threading.Event()
	handlers = {"accounts.handlers.slow": lambda envelope, payload: release.wait(5)}
	slow = build_subscription("slow-handler", "handler:accounts.handlers.slow", event_types=["*"], **FAST)
	beats = []
	heartbeat = DeliveryHeartbeat(beats.append, every=0.1)
	destinations = Destinations(handlers=handlers)
	engine = DeliveryEngine(destinations, overdue_after=0.3, on_waiting=heartbeat.beat)
	heartbeat.running = engine.running
	deliveries = MemoryDeliveries()
	envelope = make_envelope()
	deliveries.session().enqueue(plan_deliveries(envelope, build_index([slow])))
	worker = DeliveryWorker(deliveries.session(), {slow.name: slow}.get, engine)
	threading.Timer(1.0, release.set).start()
	heartbeat.count(worker.deliver_due())
	held = [beat for beat in beats if beat["overdue"]]
	assert len(held) >= 3, beats  # beat about every 0.1 s from 0.3 s until the release at 1 s
	assert all(beat["in_flight"] == 1 for beat in held)
	overdue = held[-1]["overdue"]
	assert [(o["event"], o["subscription"], o["destination"]) for o in overdue] == [
		(envelope.id, "slow-handler", "handler:accounts.handlers.slow")
	]
	assert 0.3 <= overdue[0]["running_seconds"] <= 1.1
	assert heartbeat.status() == {
		"delivered": 1, "retried": 0, "dead": 0, "last_error": None, "in_flight": 0, "overdue": []
	}  # fmt: skip
	engine.close()


def test_a_heartbeat_publishes_at_most_once_a_second_and_keeps_a_failed_cycles_error():
	beats = []
	heartbeat = DeliveryHeartbeat(beats.append)
	for _ in range(50):
		heartbeat.count(DeliveryReport(claimed=2, delivered=1, retrying=1))
	heartbeat.count(DeliveryReport(error="database gone"))
	assert len(beats) == 1, "one write per second at most"
	assert heartbeat.status()["last_error"] == "database gone"
	assert {key: heartbeat.status()[key] for key in ("delivered", "retried", "dead")} == {
		"delivered": 50, "retried": 50, "dead": 0
	}  # fmt: skip
	heartbeat.count(DeliveryReport())
	assert heartbeat.status()["last_error"] is None, "a cycle that ran clears the error"


def test_a_webhook_within_its_timeout_is_never_overdue_however_soon_handlers_are(caplog):
	# Fabric Settings' "Handlers overdue after" reached every attempt: a webhook answering within
	# its timeout was listed as overdue and logged as a handler to make "bound its own waits".
	receiver = Receiver().start()
	receiver.reply("/hook", Reply(200, delay=1.0))
	hook = build_subscription("slow-hook", receiver.url(), event_types=["*"], timeout=5, **FAST)
	beats = []
	heartbeat = DeliveryHeartbeat(beats.append, every=0.1)
	sender = WebhookSender(AddressPolicy.from_allow_list(["127.0.0.0/8"]))
	engine = DeliveryEngine(Destinations(sender=sender), overdue_after=0.3, on_waiting=heartbeat.beat)
	heartbeat.running = engine.running
	deliveries = MemoryDeliveries()
	deliveries.session().enqueue(plan_deliveries(make_envelope(), build_index([hook])))
	worker = DeliveryWorker(deliveries.session(), {hook.name: hook}.get, engine, patience=5)
	try:
		with caplog.at_level(logging.WARNING):
			heartbeat.count(worker.deliver_due())
	finally:
		engine.close()
		sender.close()
		receiver.stop()
	assert heartbeat.status()["delivered"] == 1
	assert any(beat["in_flight"] == 1 for beat in beats), beats
	assert [beat["overdue"] for beat in beats if beat["overdue"]] == []
	assert [r.getMessage() for r in caplog.records if "slow-hook" in r.getMessage()] == []
