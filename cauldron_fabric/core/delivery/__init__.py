"""Delivery: subscriptions route events to webhooks, Kafka, RabbitMQ and in-app handlers.

The Frappe layer's entry points:

* ``build_subscription`` (save-time validation and compilation), ``build_index`` and
  ``plan_deliveries`` (which subscriptions want an event: enqueue those deliveries with the event);
* ``DeliveryStore`` with ``SqlDeliveryStore``/``MemoryDeliveryStore`` (queue, dead letters,
  requeue and discard), ``build_enqueue`` for enqueuing inside Frappe's own transaction;
* ``Destinations``, ``DeliveryEngine`` and ``DeliveryWorker`` (the long-running worker), and
  ``DeliveryHeartbeat`` (what a worker reports);
* ``generate_secret`` and ``AddressPolicy.from_allow_list`` for Fabric Settings.
"""

from cauldron_fabric.core.delivery.addresses import AddressPolicy, AddressRefused
from cauldron_fabric.core.delivery.conditions import Condition, ConditionError, compile_condition
from cauldron_fabric.core.delivery.destinations import Destinations, header_set_by_the_sender, parse_address
from cauldron_fabric.core.delivery.engine import DeliveryEngine
from cauldron_fabric.core.delivery.heartbeat import DeliveryHeartbeat
from cauldron_fabric.core.delivery.matching import SubscriptionIndex, compile_filter, compile_pattern
from cauldron_fabric.core.delivery.policy import RateLimits, RetryPolicy, TokenBucket
from cauldron_fabric.core.delivery.records import (
	DEAD,
	DELIVERED,
	DISCARDED,
	PENDING,
	DeliveryAttempt,
	DeliveryJob,
	DeliveryRequest,
	DeliveryRow,
	Outcome,
)
from cauldron_fabric.core.delivery.signing import generate_secret
from cauldron_fabric.core.delivery.store import DeliveryStore
from cauldron_fabric.core.delivery.store_memory import MemoryDeliveries, MemoryDeliveryStore
from cauldron_fabric.core.delivery.store_sql import (
	SqlDeliveryStore,
	build_enqueue,
	create_table_sql,
	idle_claim_limit,
)
from cauldron_fabric.core.delivery.subscription import (
	BrokenSubscription,
	Subscription,
	SubscriptionInvalid,
	build_broken_subscription,
	build_index,
	build_subscription,
	plan_deliveries,
)
from cauldron_fabric.core.delivery.transform import RenderedPayload, Transform, compile_transform
from cauldron_fabric.core.delivery.webhook import WebhookSender, WebhookTarget
from cauldron_fabric.core.delivery.worker import DeliveryReport, DeliveryWorker

__all__ = [
	"DEAD",
	"DELIVERED",
	"DISCARDED",
	"PENDING",
	"AddressPolicy",
	"AddressRefused",
	"BrokenSubscription",
	"Condition",
	"ConditionError",
	"DeliveryAttempt",
	"DeliveryEngine",
	"DeliveryHeartbeat",
	"DeliveryJob",
	"DeliveryReport",
	"DeliveryRequest",
	"DeliveryRow",
	"DeliveryStore",
	"DeliveryWorker",
	"Destinations",
	"MemoryDeliveries",
	"MemoryDeliveryStore",
	"Outcome",
	"RateLimits",
	"RenderedPayload",
	"RetryPolicy",
	"SqlDeliveryStore",
	"Subscription",
	"SubscriptionIndex",
	"SubscriptionInvalid",
	"TokenBucket",
	"Transform",
	"WebhookSender",
	"WebhookTarget",
	"build_broken_subscription",
	"build_enqueue",
	"build_index",
	"build_subscription",
	"compile_condition",
	"compile_filter",
	"compile_pattern",
	"compile_transform",
	"create_table_sql",
	"generate_secret",
	"header_set_by_the_sender",
	"idle_claim_limit",
	"parse_address",
	"plan_deliveries",
]
