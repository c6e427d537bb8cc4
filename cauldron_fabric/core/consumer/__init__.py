"""Consumers: events from the bus drive handlers, exactly once in effect, with retries and dead letters.

The public API:

* ``Consumer`` (``runtime``) and ``ConsumerOptions`` (``options``): the loop over any
  ``MessageSource``, which settles what it cannot process (``outcomes``) and replies to
  requests (``replies``);
* ``HandlerTable``, ``HandlerContext``, ``responder`` (``handlers``): handlers by type pattern;
* ``open_source`` / ``open_requester`` (``factory``): adapters by URL scheme, ``KafkaSource``
  (consumer groups) and ``RabbitMQSource`` (a group's queue on the topic exchange);
* ``TrackingStore`` with ``MemoryTrackingStore`` and ``SqlTrackingStore``: processed marks in
  the transaction of the handler's writes;
* ``Requester.request(type, data, timeout)`` with ``KafkaRequester`` and ``RabbitMQRequester``;
* ``CircuitBreaker`` with ``MemoryCircuitStore`` and ``RedisCircuitStore``;
* ``CrashCounter`` with ``RedisCrashCounter``: handler runs the process did not survive;
* ``group_lag`` (``kafka_group``): a group's lag per partition as the broker sees it.
"""

from cauldron_fabric.core.consumer.circuit import CircuitBreaker, CircuitOpen, MemoryCircuitStore
from cauldron_fabric.core.consumer.factory import open_requester, open_source
from cauldron_fabric.core.consumer.handlers import HandlerContext, HandlerTable, responder
from cauldron_fabric.core.consumer.messages import (
	ConsumerCounts,
	DeadLetter,
	Failure,
	InboundMessage,
	Origin,
	PartitionLag,
)
from cauldron_fabric.core.consumer.options import ConsumerOptions
from cauldron_fabric.core.consumer.ports import (
	CircuitPolicy,
	CircuitState,
	CircuitStore,
	CrashCounter,
	MessageSource,
	TrackingStore,
)
from cauldron_fabric.core.consumer.requests import Reply, Requester, RequestTimeout, ResponderFailed
from cauldron_fabric.core.consumer.runtime import Consumer
from cauldron_fabric.core.consumer.tracking_memory import MemoryTracking, MemoryTrackingStore

__all__ = [
	"CircuitBreaker",
	"CircuitOpen",
	"CircuitPolicy",
	"CircuitState",
	"CircuitStore",
	"Consumer",
	"ConsumerCounts",
	"ConsumerOptions",
	"CrashCounter",
	"DeadLetter",
	"Failure",
	"HandlerContext",
	"HandlerTable",
	"InboundMessage",
	"MemoryCircuitStore",
	"MemoryTracking",
	"MemoryTrackingStore",
	"MessageSource",
	"Origin",
	"PartitionLag",
	"Reply",
	"RequestTimeout",
	"Requester",
	"ResponderFailed",
	"TrackingStore",
	"open_requester",
	"open_source",
	"responder",
]
