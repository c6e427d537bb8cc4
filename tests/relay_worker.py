"""A relay process for the tests that kill relays or run several at once.

Usage: python relay_worker.py TABLE SEQUENCE BOOTSTRAP TOPIC_TEMPLATE BATCH_SIZE [CLAIM_IDLE_SECONDS]
Runs until SIGTERM (finishing its batch) or SIGKILL (finishing nothing).
"""

import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cauldron_fabric.core.outbox.sql import SqlOutboxStore
from cauldron_fabric.core.relay import Relay, RelayOptions
from cauldron_fabric.core.retry import Backoff
from cauldron_fabric.core.transports import open_transport
from conftest import connect_db


def main() -> None:
	table, sequence, bootstrap, template, batch = sys.argv[1:6]
	idle = {"claim_idle_seconds": int(sys.argv[6])} if len(sys.argv) > 6 else {}
	stopping = []
	signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
	store, *more = (SqlOutboxStore(connect_db, table=table, sequence=sequence, **idle) for _ in range(4))
	transport = open_transport(f"kafka://{bootstrap}", {"message_timeout_ms": 3000})
	options = RelayOptions(
		batch_size=int(batch), idle_wait=0.05, topic_template=template, backoff=Backoff(0.1, 2, 1)
	)
	print("ready", flush=True)
	relay = Relay(store, transport, options, more_stores=more)
	relay.run(lambda: bool(stopping))
	relay.close()


if __name__ == "__main__":
	main()
