"""A delivery fabric for the engine's tests: subscriptions, a memory queue and workers."""

from cauldron_fabric.core.delivery.addresses import AddressPolicy
from cauldron_fabric.core.delivery.destinations import Destinations
from cauldron_fabric.core.delivery.engine import DeliveryEngine
from cauldron_fabric.core.delivery.store_memory import MemoryDeliveries
from cauldron_fabric.core.delivery.subscription import build_index, plan_deliveries
from cauldron_fabric.core.delivery.webhook import WebhookSender
from cauldron_fabric.core.delivery.worker import DeliveryWorker

# Retries a test can wait for: 0.2 s, then doubling up to 1 s, without jitter.
FAST = {"initial_delay": 0.2, "max_delay": 1.0, "jitter": 0.0}


class Fabric:
	"""Subscriptions, a memory delivery queue and workers wired the way the Frappe layer wires them."""

	def __init__(self, subscriptions, transports=None, handlers=None, **engine_options):
		self.subscriptions = {s.name: s for s in subscriptions}
		self.index = build_index(subscriptions)
		self.deliveries = MemoryDeliveries()
		sender = WebhookSender(AddressPolicy.from_allow_list(["127.0.0.0/8"]))
		self.destinations = Destinations(transports=transports, handlers=handlers, sender=sender)
		self.engine = DeliveryEngine(self.destinations, **engine_options)

	def emit(self, *envelopes):
		store = self.deliveries.session()
		return sum(store.enqueue(plan_deliveries(envelope, self.index)) for envelope in envelopes)

	def worker(self, **options):
		return DeliveryWorker(self.deliveries.session(), self.subscriptions.get, self.engine, **options)

	def rows(self):
		store = self.deliveries.session()
		return [store.get(seq) for seq in sorted(self.deliveries.rows)]

	def close(self):
		self.engine.close()
		self.destinations.close()
