"""What the request-reply test modules share: a price request, and a responder group whose
members answer it, stay silent or fail as each request asks, each in its own thread.
"""

import threading
import time

from cauldron_fabric.core.consumer import (
	Consumer,
	ConsumerOptions,
	HandlerTable,
	MemoryTracking,
)

PRICE = "quote.price.requested"


def pricing_handler(name):
	"""Answers price requests; stays silent when asked to, fails when asked to."""

	def handle(envelope, context):
		payload = envelope.data.payload
		if payload.get("silent"):
			return
		if payload.get("fail"):
			context.fail(LookupError(f"no price list for {payload['sku']}"))
			return
		context.reply({"price": payload["qty"] * 2.5, "responder": name, "note": payload.get("note", "")})

	return handle


class Responders:
	"""Members of one responder group, each consuming in its own thread."""

	def __init__(self, bus, channel, group, names, **option_fields):
		self.stop, self.threads, self.sources = threading.Event(), [], []
		self.tracking = MemoryTracking()  # the group's one database
		options = ConsumerOptions(group=group, max_attempts=2, poll_timeout=0.05, **option_fields)
		for name in names:
			source = bus.source(options, channel)
			consumer = Consumer(
				source,
				HandlerTable.from_mapping({PRICE: pricing_handler(name)}),
				self.tracking.session(),
				options,
			)
			thread = threading.Thread(target=self._run, args=(consumer,), daemon=True)
			thread.start()
			self.threads.append(thread)
			self.sources.append(source)

	def _run(self, consumer):
		consumer.run(self.stop.is_set)
		consumer.close()

	def ready(self, timeout=30):
		deadline = time.monotonic() + timeout
		while time.monotonic() < deadline:
			if all(getattr(s, "assigned", True) for s in self.sources):
				return True
			time.sleep(0.1)
		return False

	def close(self):
		self.stop.set()
		for thread in self.threads:
			thread.join(15)
