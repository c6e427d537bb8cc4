"""Request-reply round trips per second and latency (p50, p99), on Kafka and on RabbitMQ.

A responder group (one consumer, in-memory tracking, a handler that replies at once) answers
``bench.price.requested``; a requester sends requests one after the other (sequential) and
then from several threads at once. Every round trip goes through the full path: envelope,
circuit breaker (in Redis), broker, consumer runtime with tracking, reply, correlation. The
baseline for RabbitMQ is a bare pika RPC loop (direct reply-to, no fabric) in the same run.

On Kafka both fetch waits are set to 10 ms: the test broker (Tansu) holds every fetch for its
full wait even when data is there (a Kafka broker answers as soon as one byte is), so with
librdkafka's 500 ms default each hop would measure the broker's timer, not the fabric.

Run: python tests/benchmarks/bench_request_reply.py [--requests 500] [--threads 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

import pika  # noqa: E402

from cauldron_fabric.core.consumer import (  # noqa: E402
	CircuitBreaker,
	CircuitPolicy,
	Consumer,
	ConsumerOptions,
	HandlerTable,
	MemoryTracking,
	open_requester,
	open_source,
)
from cauldron_fabric.core.consumer.circuit_redis import RedisCircuitStore  # noqa: E402
from cauldron_fabric.testing.kafka_broker import KafkaBroker  # noqa: E402

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
TYPE = "bench.price.requested"


def answer(envelope, context):
	context.reply({"price": envelope.data.payload["qty"] * 2})


def start_responder(
	url: str, channel: str, broker_options: dict
) -> tuple[threading.Event, threading.Thread, object]:
	options = ConsumerOptions(
		group=f"bench-responders-{uuid.uuid4().hex[:6]}", poll_timeout=0.01, batch_size=50
	)
	topics = [channel] if url.startswith("kafka") else [TYPE]
	source = open_source(url, options, topics, broker_options=broker_options)
	consumer = Consumer(
		source, HandlerTable.from_mapping({TYPE: answer}), MemoryTracking().session(), options
	)
	stop = threading.Event()
	thread = threading.Thread(target=lambda: (consumer.run(stop.is_set), consumer.close()), daemon=True)
	thread.start()
	deadline = time.monotonic() + 30
	while not getattr(source, "assigned", True) and time.monotonic() < deadline:
		time.sleep(0.05)
	return stop, thread, source


def delete_group_queues(source) -> None:
	"""Removes a RabbitMQ responder group's queues (the benchmark leaves nothing behind)."""
	from cauldron_fabric.core.consumer.rabbitmq_queues import dead_letter_queue, retry_queue

	channel = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)).channel()
	queues = [
		source.queue,
		dead_letter_queue(source.queue),
		*(retry_queue(source.queue, d) for d in source.retry_delays),
	]
	for queue in queues:
		channel.queue_delete(queue)
	channel.connection.close()


def measure(send, count: int, threads: int) -> tuple[float, list[float]]:
	"""Runs ``count`` round trips over ``threads`` threads; returns (seconds, latencies)."""
	latencies: list[float] = []
	lock = threading.Lock()

	def work(share: int) -> None:
		for _ in range(share):
			started = time.perf_counter()
			send()
			elapsed = time.perf_counter() - started
			with lock:
				latencies.append(elapsed)

	workers = [threading.Thread(target=work, args=(count // threads,)) for _ in range(threads)]
	started = time.perf_counter()
	for worker in workers:
		worker.start()
	for worker in workers:
		worker.join()
	return time.perf_counter() - started, latencies


def report(label: str, seconds: float, latencies: list[float]) -> None:
	ordered = sorted(latencies)
	p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
	print(
		f"{label:<44} {len(ordered) / seconds:9.0f} round trips/s   "
		f"p50 {statistics.median(ordered) * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms"
	)


def bare_pika_rpc(count: int, exchange: str) -> None:
	"""The baseline: a pika RPC client and server with direct reply-to, nothing else."""
	server = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
	channel = server.channel()
	queue = channel.queue_declare("", exclusive=True).method.queue
	channel.exchange_declare(exchange, "topic", durable=True)
	channel.queue_bind(queue, exchange, routing_key="bare.rpc")

	def serve(ch, method, properties, body):
		ch.basic_publish(
			"", properties.reply_to, body, pika.BasicProperties(correlation_id=properties.correlation_id)
		)
		ch.basic_ack(method.delivery_tag)

	channel.basic_consume(queue, serve)
	stop = threading.Event()

	def run_server():
		while not stop.is_set():
			server.process_data_events(time_limit=0.05)

	thread = threading.Thread(target=run_server, daemon=True)
	thread.start()
	client = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
	cchannel = client.channel()
	got: dict[str, bytes] = {}
	cchannel.basic_consume(
		"amq.rabbitmq.reply-to", lambda ch, m, p, b: got.__setitem__(p.correlation_id, b), auto_ack=True
	)

	def send():
		correlation = uuid.uuid4().hex
		cchannel.basic_publish(
			exchange,
			"bare.rpc",
			b'{"qty": 2}',
			pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id=correlation),
		)
		while correlation not in got:
			client.process_data_events(time_limit=1)
		got.pop(correlation)

	for _ in range(20):
		send()
	report("RabbitMQ bare pika RPC (baseline), 1 thread", *measure(send, count, 1))
	stop.set()
	thread.join()
	client.close()


def run_bus(name: str, url: str, channel: str, broker_options: dict, requester_options: dict, args) -> None:
	stop, thread, source = start_responder(url, channel, broker_options)
	prefix = f"bench:{uuid.uuid4().hex[:6]}:"
	breaker = CircuitBreaker(RedisCircuitStore("redis://127.0.0.1:6379/0", prefix), CircuitPolicy())
	target = channel if name == "Kafka" else TYPE
	requesters = [
		open_requester(url, source="urn:bench", breaker=breaker, broker_options=requester_options)
		for _ in range(args.threads if name == "RabbitMQ" else 1)
	]
	local = threading.local()
	pool = iter(requesters)
	pool_lock = threading.Lock()

	def send():
		if not hasattr(local, "requester"):
			with pool_lock:
				local.requester = next(pool, requesters[0])
		local.requester.request(TYPE, {"qty": 2}, 10, target=target)

	try:
		for _ in range(20):
			requesters[0].request(TYPE, {"qty": 2}, 10, target=target)
		report(f"{name} fabric request-reply, 1 thread", *measure(send, args.requests, 1))
		local.__dict__.clear()
		pool = iter(requesters)
		report(
			f"{name} fabric request-reply, {args.threads} threads",
			*measure(send, args.requests, args.threads),
		)
	finally:
		for requester in requesters:
			requester.close()
		stop.set()
		thread.join(15)
		breaker.store.reset(target)
		if name == "RabbitMQ":
			delete_group_queues(source)


def main() -> None:
	parser = argparse.ArgumentParser(description=__doc__)
	parser.add_argument("--requests", type=int, default=500)
	parser.add_argument("--threads", type=int, default=8)
	args = parser.parse_args()
	print(f"{args.requests} round trips per line on this machine")
	with KafkaBroker() as broker:
		topic = f"bench.requests.{uuid.uuid4().hex[:6]}"
		run_bus(
			"Kafka",
			broker.url,
			topic,
			{"session_timeout_ms": 6000, "fetch_wait_ms": 10},
			{"reply_topic": f"{topic}.replies", "reply_fetch_wait_ms": 10},
			args,
		)
	exchange = f"bench.rpc.{uuid.uuid4().hex[:6]}"
	run_bus(
		"RabbitMQ",
		RABBITMQ_URL,
		exchange,
		{"exchange": exchange, "prefetch": 50},
		{"exchange": exchange},
		args,
	)
	bare_pika_rpc(args.requests, exchange + ".bare")
	cleanup = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL)).channel()
	for suffix in ("", ".dlx", ".bare"):
		cleanup.exchange_delete(exchange + suffix)


if __name__ == "__main__":
	main()
