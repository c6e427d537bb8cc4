"""The custom headers a webhook subscription may send: which names the fabric keeps for itself,
which steer the connection rather than the event, and how rows are read."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cauldron_fabric.core.errors import ConfigurationError

RESERVED_HEADERS = frozenset(
	{"webhook-id", "webhook-timestamp", "webhook-signature", "host", "content-length"}
)
# Hop-by-hop headers (RFC 9110 7.6.1) frame or steer one connection, not the event: a
# Transfer-Encoding beside the Content-Length of an unchunked body makes receivers misread it.
HOP_BY_HOP_HEADERS = frozenset(
	{
		"connection",
		"keep-alive",
		"proxy-connection",
		"te",
		"trailer",
		"transfer-encoding",
		"upgrade",
		"expect",
	}
)
# An HTTP field name is a token (RFC 9110 5.1): sent with a space or a colon, it ends the
# receiver's header section there, and the signature headers after it are never read.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def reserved_header_problem(headers: Sequence[tuple[str, str]]) -> str | None:
	"""Returns why a header row names a header the fabric sets (the Standard Webhooks ones, Host,
	Content-Length), or None.

	Checked on every attempt, not only by validate(): a target built without it and without a
	secret would otherwise send a row's ``webhook-signature`` as if the fabric had signed the event.
	"""
	for name, _value in headers:
		if name.lower() in RESERVED_HEADERS:
			return f"Webhook header {name!r} is set by the fabric and cannot be overridden."
	return None


def check_header(name: str, value: str) -> None:
	"""Raises ConfigurationError for a custom header the request cannot carry as written.

	The value is never quoted: it is often a credential (Authorization).
	"""
	if not HEADER_NAME.fullmatch(name):
		raise ConfigurationError(
			f"Webhook header name {name!r} is not a valid HTTP header name.",
			hint="Use letters, digits and hyphens only, e.g. X-Api-Key.",
		)
	if problem := reserved_header_problem([(name, value)]):
		raise ConfigurationError(problem, hint="Remove it from the subscription's headers.")
	if name.lower() in HOP_BY_HOP_HEADERS:
		raise ConfigurationError(
			f"Webhook header {name!r} controls the HTTP connection, not the event, and cannot be set.",
			hint="Remove it from the subscription's headers.",
		)
	if any(char in value for char in "\r\n\0"):
		raise ConfigurationError(
			f"Webhook header {name!r} has a line break in its value.", hint="Write the value on one line."
		)


def header_pairs(
	headers: Mapping[str, str] | Sequence[tuple[str, str]] | None,
) -> tuple[tuple[str, str], ...]:
	"""Normalises custom headers given as a mapping or pairs (blanks around a value are no part of it)."""
	if not headers:
		return ()
	items = headers.items() if isinstance(headers, Mapping) else headers
	return tuple((str(k).strip(), str(v).strip()) for k, v in items)
