"""Kafka records as the fabric reads them: an ``InboundMessage`` from a confluent-kafka message.

The record's headers are read even where the Kafka client cannot: a header name that is no
UTF-8 (which a client taking names as bytes writes) leaves the message with no headers and a
reason, for the consumer to dead-letter it, where it stopped the consumer on it for good.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Any

from cauldron_fabric.core.consumer.messages import InboundMessage


def inbound_message(record) -> InboundMessage:
	"""Returns a fetched record (not an error) as the message the consumer handles."""
	headers, unreadable = _headers_of(record)
	value = record.value()
	return InboundMessage(
		record.topic(),
		record.partition(),
		record.offset(),
		record.key(),
		value or b"",
		headers,
		record.timestamp()[1],
		unreadable=unreadable,
		tombstone=value is None,
	)


# Message.headers() returns the header list with the UnicodeDecodeError still set, and Python
# 3.11+ checks for that only on a generic call: once the interpreter has specialised a plain
# ``message.headers()`` call site (after a few runs), the error went unnoticed there and broke
# a later call (a SystemError out of poll, or worse). Called through methodcaller, the call
# always takes the checked path, so the error is raised here, where it is expected.
_READ_HEADERS = operator.methodcaller("headers")


def _headers_of(message) -> tuple[tuple[tuple[str, Any], ...], str | None]:
	"""Returns a record's headers, or none and why when the Kafka client cannot read them.

	confluent-kafka reads header names as UTF-8 and raises (a SystemError) on other bytes, which
	a client taking names as bytes (Go's) writes. Raised out of poll(), it stopped the consumer
	on the same record at every restart, and its partition never moved again. Asked once, and
	through _READ_HEADERS (see there).
	"""
	try:
		return tuple(_READ_HEADERS(message) or ()), None
	except Exception as exc:
		# The half-built list (a name slot left empty) stays on the message: dropped now, nothing
		# can come across it later.
		with contextlib.suppress(Exception):
			message.set_headers([])
		cause = exc.__cause__ or exc.__context__ or exc
		return (), f"its Kafka headers cannot be read: header names must be UTF-8 text ({cause})"
