"""RabbitMQ publish rate with publisher confirms: our transport against a bare pika loop.

Both sides publish the same persistent, mandatory messages (a seed envelope with its CloudEvents
headers, about 700 bytes) to the same durable topic exchange and queue of the machine's broker,
and count a message only once the broker confirmed it. The bare loop is pika's documented way:
BlockingConnection with ``confirm_delivery()``, one ``basic_publish`` after the other. Our
transport publishes batches (the relay's batch size) and collects the cumulative confirms.
Target: at least 80% of the bare loop's rate.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

import pika  # noqa: E402

from cauldron_fabric.core.cloudevents import kafka_headers  # noqa: E402
from cauldron_fabric.core.ports import OutboundMessage  # noqa: E402
from cauldron_fabric.core.transports import open_transport  # noqa: E402
from cauldron_fabric.core.transports.amqp import amqp_properties  # noqa: E402
from conftest import make_envelope  # noqa: E402

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def outbound(count: int) -> list[OutboundMessage]:
	made = []
	for n in range(count):
		envelope = make_envelope(
			"Sales Invoice", f"SINV-{n % 50}", "submitted", grand_total=n, customer="ACME"
		)
		made.append(
			OutboundMessage(
				"sales_invoice.submitted",
				envelope.partition_key,
				envelope.to_json().encode(),
				kafka_headers(envelope),
			)
		)
	return made


def bare_pika_rate(exchange: str, messages: list[OutboundMessage]) -> float:
	connection = pika.BlockingConnection(pika.URLParameters(URL))
	channel = connection.channel()
	channel.confirm_delivery()
	started = time.perf_counter()
	for message in messages:
		# The same properties our transport sends, so both sides put the same bytes on the wire.
		properties = amqp_properties(message, "cloudEvents_", "bench")
		channel.basic_publish(exchange, "sales_invoice.submitted", message.body, properties, mandatory=True)
	elapsed = time.perf_counter() - started
	connection.close()
	return len(messages) / elapsed


def transport_rate(exchange: str, messages: list[OutboundMessage], batch: int) -> float:
	transport = open_transport(URL, {"exchange": exchange})
	transport.publish(messages[:10], 10)  # connect and declare outside the timing, like the bare loop
	started = time.perf_counter()
	for start in range(0, len(messages), batch):
		deliveries = transport.publish(messages[start : start + batch], 30)
		if not all(d.ok for d in deliveries):
			raise SystemExit(f"publishing failed: {next(d.error for d in deliveries if not d.ok)}")
	elapsed = time.perf_counter() - started
	transport.close()
	return len(messages) / elapsed


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	parser.add_argument("--messages", type=int, default=20_000)
	parser.add_argument("--batch", type=int, default=500)
	parser.add_argument("--rounds", type=int, default=2)
	args = parser.parse_args()
	exchange = f"bench.{uuid.uuid4().hex[:8]}"
	setup = open_transport(URL, {"exchange": exchange})
	queue = setup.declare_queue(f"{exchange}.sink", ("#",), dead_letter=False).queue
	messages = outbound(args.messages)
	admin = pika.BlockingConnection(pika.URLParameters(URL))
	channel = admin.channel()
	bare, ours = [], []
	try:
		for _ in range(args.rounds):
			bare.append(bare_pika_rate(exchange, messages))
			channel.queue_purge(queue)
			ours.append(transport_rate(exchange, messages, args.batch))
			channel.queue_purge(queue)
	finally:
		channel.queue_delete(queue)
		channel.exchange_delete(exchange)
		admin.close()
	best_bare, best_ours = max(bare), max(ours)
	print(f"messages per round: {args.messages}, batch: {args.batch}, rounds: {args.rounds}")
	print(f"bare pika (BlockingConnection, confirm each): {', '.join(f'{r:,.0f}' for r in bare)} msg/s")
	print(f"fabric RabbitMQTransport (batched confirms):  {', '.join(f'{r:,.0f}' for r in ours)} msg/s")
	print(
		f"ratio (best/best): {best_ours / best_bare:.0%}; target >= 80%: {'met' if best_ours >= 0.8 * best_bare else 'NOT met'}"
	)


if __name__ == "__main__":
	main()
