"""A consumer process for the tests that run several members of a group or kill one.

Usage: python consumer_worker.py URL GROUP CHANNEL TABLE SEQUENCE EFFECTS NAME [HOLD_AFTER]

CHANNEL is the Kafka topic (its requesters reply on ``CHANNEL.replies``), or the RabbitMQ
exchange (bound with ``#``; requesters use direct reply-to). Each handled event
inserts a row into EFFECTS in the same transaction as its processed mark in TABLE; a request
gets the reply ``{"worker": NAME}``, or a failed reply when its payload says ``fail``. With
HOLD_AFTER = n, the n-th event is committed to the database and then the process stops before
marking the message done (no offset commit, no ack), waiting to be killed.

Prints ``ready`` once it has partitions (or a queue), ``committed <id>`` at the hold, and at a
SIGTERM-ed exit ``stats <json>``.

With CRASH_PREFIX set in the environment, handler runs that never came back are counted in
Redis under that prefix; the event whose id is CRASH_ON kills the process in its handler.
"""

import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cauldron_fabric.core.consumer import Consumer, ConsumerOptions, HandlerTable, open_source
from cauldron_fabric.core.consumer.crashes_redis import RedisCrashCounter
from cauldron_fabric.core.consumer.tracking_sql import SqlTrackingStore
from cauldron_fabric.core.retry import Backoff
from conftest import connect_db


def main() -> None:
	url, group, channel, table, sequence, effects, name = sys.argv[1:8]
	hold_after = int(sys.argv[8]) if len(sys.argv) > 8 else 0
	stopping = []
	signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
	options = ConsumerOptions(group=group, max_attempts=3, backoff=Backoff(0.2, 2, 1, 0), commit_interval=0.5)
	kafka = url.startswith("kafka")
	broker_options = (
		{"session_timeout_ms": 6000, "reply_topic": f"{channel}.replies"}
		if kafka
		else {"exchange": channel, "prefetch": 5}
	)
	source = open_source(url, options, [channel] if kafka else ["#"], broker_options=broker_options)
	tracking = SqlTrackingStore(connect_db, table=table, sequence=sequence)
	handled = []

	def record_effect(envelope, context):
		if envelope.id == os.environ.get("CRASH_ON"):
			os._exit(70)  # what an out-of-memory kill or a crash in a C extension does
		with context.transaction.cursor() as cur:
			cur.execute(
				f"INSERT INTO `{effects}` (event_id, worker, part) VALUES (%s, %s, %s)",
				(envelope.id, name, context.message.partition),
			)
		if context.is_request:
			if envelope.data.payload.get("fail"):
				context.fail(LookupError(f"{name} has no price list"))
			else:
				context.reply({"worker": name})
		time.sleep(0.01)  # a handler that takes a moment, so both members get work

	def after_commit(message, envelope):
		handled.append(message.partition)
		if hold_after and len(handled) == hold_after:
			print(f"committed {envelope.id}", flush=True)
			time.sleep(3600)  # killed here: the effect is committed, the offset/ack is not

	consumer = Consumer(
		source,
		HandlerTable.from_mapping({"**": record_effect}),
		tracking,
		options,
		after_commit=after_commit,
		crashes=RedisCrashCounter(prefix=os.environ["CRASH_PREFIX"])
		if "CRASH_PREFIX" in os.environ
		else None,
	)
	announced = []

	def announce(_consumer):
		if not announced and (not kafka or source.assigned):
			announced.append(True)
			print("ready", flush=True)

	consumer.run(lambda: bool(stopping), on_round=announce)
	consumer.close()
	totals = consumer.stats.totals()
	print(
		"stats "
		+ json.dumps(
			{
				"processed": totals.processed,
				"duplicates": totals.duplicates,
				"partitions": sorted(set(handled)),
			}
		),
		flush=True,
	)


if __name__ == "__main__":
	main()
