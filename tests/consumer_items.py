"""The items the consumer failure tests send: good, flaky, doomed or refused by their handler,
which records each one handled in the tracking session's transaction.
"""

import time

from cauldron_fabric.core.consumer import Consumer, HandlerTable, MemoryTracking
from cauldron_fabric.core.errors import PermanentError
from conftest import make_envelope


def item(mode, n):
	return make_envelope("Item", "I-1", "created", mode=mode, n=n)


def handle_item(envelope, context):
	mode = envelope.data.payload["mode"]
	if mode == "flaky" and context.attempt == 1:
		raise ConnectionError("the ledger service blinked")
	if mode == "doomed":
		raise RuntimeError(f"ledger refuses item {envelope.data.payload['n']} on attempt {context.attempt}")
	if mode == "refused":
		raise PermanentError("item 6 is for another company")
	context.transaction.append((envelope.data.payload["n"], time.monotonic()))


def item_consumer(source, options):
	"""Returns a consumer handling items (and garbage) into memory, its tracking and dead letters."""
	tracking, letters = MemoryTracking(), []
	handlers = HandlerTable.from_mapping({"item.*": handle_item, "garbage.*": handle_item})
	consumer = Consumer(source, handlers, tracking.session(), options, on_dead_letter=letters.append)
	return consumer, tracking, letters
