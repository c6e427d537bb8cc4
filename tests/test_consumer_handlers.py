"""Handler tables, handler contexts, replies and the headers of retry and dead-letter copies."""

import pytest

from cauldron_fabric.core.consumer.handlers import HandlerContext, HandlerTable, reply_type, responder
from cauldron_fabric.core.consumer.messages import (
	ATTEMPTS,
	CONSUMER_GROUP,
	DEAD_LETTER_REASON,
	EXCEPTION_CLASS,
	NOT_BEFORE,
	ORIGIN_OFFSET,
	ORIGIN_TOPIC,
	REPLY_TO,
	ConsumerStats,
	Failure,
	InboundMessage,
	Origin,
	forwarded_headers,
)
from cauldron_fabric.core.delivery.matching import PatternError
from conftest import make_envelope


def message(**headers):
	return InboundMessage("orders", 2, 41, b"ToDo/T-1", b"{}", tuple(headers.items()))


def test_patterns_pick_handlers_in_registration_order():
	def first(e, c):
		pass

	def second(e, c):
		pass

	def every(e, c):
		pass

	table = HandlerTable.from_mapping(
		{"agent.approval.requested": first, "agent.*.requested": [second], "**": every}
	)
	assert table.handlers_for("agent.approval.requested") == (first, second, every)
	assert table.handlers_for("agent.task.requested") == (second, every)
	assert table.handlers_for("agent.task.created") == (every,)
	assert table.patterns == ["agent.approval.requested", "agent.*.requested", "**"]
	assert HandlerTable().handlers_for("agent.task.created") == ()


def test_a_partial_wildcard_is_refused_with_the_fix():
	with pytest.raises(PatternError, match="whole words"):
		HandlerTable.from_mapping({"agent.appro*": lambda e, c: None})


def test_a_reply_answers_the_request_it_was_caused_by():
	request = make_envelope("Quote", "Q-1", "requested", qty=3)
	context = HandlerContext(request, message(**{REPLY_TO: "replies"}), "pricing", "urn:pricing")
	responder(lambda envelope: {"price": envelope.data.payload["qty"] * 2})(request, context)
	(reply,) = context.replies
	assert context.is_request
	assert reply.type == reply_type(request.type) == "quote.requested.reply"
	assert reply.metadata.causation_id == request.id
	assert reply.metadata.correlation_id == request.metadata.correlation_id
	assert (reply.data.action, dict(reply.data.payload), reply.source) == (
		"replied",
		{"price": 6},
		"urn:pricing",
	)


def test_a_responder_error_becomes_a_failed_reply():
	request = make_envelope("Quote", "Q-1", "requested")
	context = HandlerContext(request, message(), "pricing", "urn:pricing")

	def broken(envelope):
		raise ValueError("no price list for Q-1")

	responder(broken)(request, context)
	(reply,) = context.replies
	assert reply.data.action == "failed"
	assert dict(reply.data.payload) == {"error": "no price list for Q-1", "errorClass": "ValueError"}


def test_a_retry_copy_keeps_its_first_origin_and_counts_attempts():
	original = message(ce_id="abc")
	failure = Failure.of("attempts-exhausted", RuntimeError("database said no"))
	first = dict(forwarded_headers(original, "billing", 2, failure, not_before=1_700_000_000.5))
	assert first[ORIGIN_TOPIC] == "orders" and first[ORIGIN_OFFSET] == "41" and first["ce_id"] == "abc"
	assert (first[ATTEMPTS], first[NOT_BEFORE], first[CONSUMER_GROUP]) == ("2", "1700000000500", "billing")
	assert first[EXCEPTION_CLASS] == "builtins.RuntimeError" and DEAD_LETTER_REASON not in first
	copy = InboundMessage("billing.retry.1", 0, 7, b"k", b"{}", tuple(first.items()))
	assert copy.origin == Origin("orders", 2, 41) and copy.attempt == 2 and copy.not_before == 1_700_000_000.5
	dead = forwarded_headers(copy, "billing", 3, failure, dead=True)
	assert [value for name, value in dead if name == ATTEMPTS] == ["3"]
	assert dict(dead)[DEAD_LETTER_REASON] == "attempts-exhausted" and dict(dead)[ORIGIN_TOPIC] == "orders"
	assert NOT_BEFORE not in dict(dead)


def test_stats_count_per_partition_and_in_total():
	stats = ConsumerStats()
	stats.count("orders", 0, "processed", 3)
	stats.count("orders", 1, "failed")
	stats.count("orders", 1, "processed")
	assert stats.per_partition()[("orders", 1)].failed == 1
	assert (stats.totals().processed, stats.totals().failed) == (4, 1)
