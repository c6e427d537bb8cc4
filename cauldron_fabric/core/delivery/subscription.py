"""A subscription, validated and compiled once when it is saved.

The Event Subscription DocType's controller calls ``build_subscription`` in ``validate`` (so an
invalid pattern, condition, template, address or secret is refused on save with every problem
listed) and again when the delivery workers load subscriptions. A stored subscription that
no longer compiles there (a later version refuses what an earlier one let through) still
routes, as a ``BrokenSubscription``: its events become dead letters naming the problem,
to retry once it is fixed, instead of disappearing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cauldron_fabric.core.delivery.destinations import overridden_header_problems, parse_address
from cauldron_fabric.core.delivery.matching import (
	ANY,
	EventFilter,
	SubscriptionIndex,
	compile_filter,
	compile_pattern,
)
from cauldron_fabric.core.delivery.policy import RetryPolicy
from cauldron_fabric.core.delivery.records import DeliveryRequest
from cauldron_fabric.core.delivery.transform import ENVELOPE, Transform, compile_transform
from cauldron_fabric.core.delivery.webhook import WebhookTarget
from cauldron_fabric.core.delivery.webhook_headers import header_pairs
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.retry import Backoff

DEFAULT_POLICY = RetryPolicy()


class SubscriptionInvalid(ConfigurationError):
	"""A subscription that cannot be saved; ``problems`` lists every defect, one per field."""

	def __init__(self, name: str, problems: list[str]):
		self.problems = problems
		super().__init__(f"Event Subscription {name!r} cannot be saved: " + " ".join(problems))


@dataclass(frozen=True, slots=True)
class Subscription:
	"""Which events, where, in which form, how persistently and how fast."""

	name: str
	destination: str
	filter: EventFilter
	transform: Transform
	policy: RetryPolicy = DEFAULT_POLICY
	webhook: WebhookTarget | None = None
	ordered: bool = False
	rate_limit: float = 0.0
	burst: int = 1
	enabled: bool = True


@dataclass(frozen=True, slots=True)
class BrokenSubscription:
	"""A stored subscription that no longer compiles: which events it still catches, and why.

	Its filter keeps what still compiles of the type patterns, DocTypes and content filter,
	so it catches at least every event it meant to: the delivery step turns each into a dead
	letter saying what to fix, and retrying them after the fix delivers them.
	"""

	name: str
	filter: EventFilter
	problem: str
	ordered: bool = False
	enabled: bool = True
	unfiltered: bool = False  # its content filter does not compile, so none was applied

	def dead_letter_reason(self) -> str:
		"""Returns the error its deliveries die with: the problem and what to do."""
		reason = (
			f"Subscription {self.name!r} does not compile: {self.problem}"
			" Fix and save it, then retry this dead letter."
		)
		if self.unfiltered:
			reason += (
				" Its content filter could not be applied: discard the letters of events it should not get."
			)
		return reason


def build_broken_subscription(
	name: str,
	problem: str,
	*,
	event_types: Sequence[str],
	doctypes: Iterable[str] = (),
	condition: str | None = None,
	ordered: bool = False,
	enabled: bool = True,
) -> BrokenSubscription:
	"""Returns the stand-in of a subscription that no longer compiles; never raises.

	A type pattern that does not compile is left out (when none does, every type is caught),
	and so is a content filter that does not.
	"""
	# Whatever a later version refuses, and however it refuses it: loading must go on.
	patterns = []
	for text in event_types:
		try:
			patterns.append(compile_pattern(text).text)
		except Exception:
			continue
	wanted = [d for d in doctypes if isinstance(d, str)]
	try:
		event_filter, unfiltered = compile_filter(patterns or [ANY], wanted, condition), False
	except Exception:
		event_filter, unfiltered = compile_filter(patterns or [ANY], wanted), True
	return BrokenSubscription(name, event_filter, problem, bool(ordered), bool(enabled), unfiltered)


def build_subscription(
	name: str,
	destination: str,
	*,
	event_types: Sequence[str],
	doctypes: Iterable[str] = (),
	condition: str | None = None,
	payload_form: str = ENVELOPE,
	template: str = "",
	fields: Sequence[str] = (),
	content_type: str | None = None,
	method: str = "POST",
	headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
	timeout: float = 10.0,
	secret: str | None = None,
	max_attempts: int = 8,
	initial_delay: float = 5.0,
	max_delay: float = 3600.0,
	jitter: float = 0.2,
	ordered: bool = False,
	rate_limit: float = 0.0,
	burst: int | None = None,
	enabled: bool = True,
) -> Subscription:
	"""Validates every setting and returns the compiled subscription; raises SubscriptionInvalid."""
	problems: list[str] = []

	def check(label: str, build):
		try:
			return build()
		except ConfigurationError as exc:
			problems.append(f"{label}: {exc}")
			return None

	event_filter = check("Events", lambda: compile_filter(event_types, doctypes, condition))
	transform = check(
		"Payload",
		lambda: compile_transform(payload_form, template=template, fields=fields, content_type=content_type),
	)
	address = check("Destination", lambda: parse_address(destination))
	webhook = None
	if address is not None and address.kind == "webhook":
		target = WebhookTarget(
			address.target, (method or "POST").upper(), header_pairs(headers), float(timeout), secret or None
		)
		webhook = check("Webhook", lambda: (target.validate(), target)[1])
		if webhook is not None and transform is not None:
			problems += [f"Webhook: {p}" for p in overridden_header_problems(webhook.headers, payload_form)]
	policy = RetryPolicy(
		max_attempts, Backoff(base=initial_delay, factor=2.0, maximum=max_delay, jitter=jitter)
	)
	check("Retries", policy.validate)
	if rate_limit < 0:
		problems.append(f"Rate limit: {rate_limit} per second must be 0 (no limit) or more.")
	if problems:
		raise SubscriptionInvalid(name, problems)
	return Subscription(
		name,
		destination.strip(),
		event_filter,
		transform,
		policy,
		webhook,
		bool(ordered),
		float(rate_limit),
		max(1, int(burst if burst is not None else max(1, rate_limit))),
		bool(enabled),
	)


def build_index(
	subscriptions: Iterable[Subscription | BrokenSubscription],
) -> SubscriptionIndex[Subscription | BrokenSubscription]:
	"""Returns the matching index over the enabled subscriptions (broken ones included)."""
	return SubscriptionIndex((s, s.filter) for s in subscriptions if s.enabled)


def plan_deliveries(
	envelope: Envelope, index: SubscriptionIndex[Subscription | BrokenSubscription]
) -> list[DeliveryRequest]:
	"""Returns one delivery per subscription that wants the event, ordered ones keyed by entity."""
	return [
		DeliveryRequest(s.name, envelope, envelope.partition_key if s.ordered else None)
		for s in index.match(envelope)
	]
