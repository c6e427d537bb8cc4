"""The machine's RabbitMQ for tests: bind a queue to an exchange, read it, publish, clean up."""

from __future__ import annotations

import pika

URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
# The same broker as Fabric Settings take it: the password goes in a field of its own.
SETTINGS_URL = "amqp://guest@127.0.0.1:5672/%2F"
PASSWORD = "guest"


class RabbitMQ:
	"""One blocking connection for a test class."""

	def __init__(self, url: str = URL):
		self.connection = pika.BlockingConnection(pika.URLParameters(url))
		self.channel = self.connection.channel()

	def bound_queue(self, exchange: str, key: str) -> str:
		"""Declares the durable topic exchange and an exclusive queue bound to it with ``key``."""
		self.channel.exchange_declare(exchange, "topic", durable=True)
		queue = self.channel.queue_declare("", exclusive=True).method.queue
		self.channel.queue_bind(queue, exchange, routing_key=key)
		return queue

	def drain(self, queue: str) -> list[tuple]:
		"""Returns every (properties, body) waiting in ``queue``, acknowledged."""
		received = []
		while (message := self.channel.basic_get(queue, auto_ack=True))[0] is not None:
			_, properties, body = message
			received.append((properties, body))
		return received

	def publish(
		self, exchange: str, routing_key: str, body: bytes, content_type: str = "application/json"
	) -> None:
		"""Publishes one persistent message."""
		properties = pika.BasicProperties(content_type=content_type, delivery_mode=2)
		self.channel.basic_publish(exchange, routing_key, body, properties)

	def delete(self, queues: tuple[str, ...] = (), exchanges: tuple[str, ...] = ()) -> None:
		"""Deletes queues and exchanges (missing ones are fine)."""
		for queue in queues:
			self.channel.queue_delete(queue)
		for exchange in exchanges:
			self.channel.exchange_delete(exchange)

	def close(self) -> None:
		"""Closes the connection."""
		if self.connection.is_open:
			self.connection.close()
