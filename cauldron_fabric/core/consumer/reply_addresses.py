"""Where a responder may write replies: the requesters' own reply addresses and an admin's allow-list.

A request names its reply address itself (``fabric-reply-to``, the AMQP ``reply_to``), and the
responder writes a fabric-signed envelope there. Unchecked, anyone able to publish a request
could make a trusted responder write into any topic or queue, such as an event topic other
services consume. So a reply goes only to an address this policy allows: the broker's own reply
addresses (the requesters' reply topic on Kafka, direct reply-to on RabbitMQ) plus the patterns
an admin lists (*Fabric Settings → Other reply addresses*, the source option
``allowed_reply_addresses``), where ``*`` stands for any run of characters.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cauldron_fabric.core.errors import PermanentError

SETTING = "Fabric Settings → Other reply addresses (source option allowed_reply_addresses)"


class ReplyAddressRefused(PermanentError):
	"""A request asks for its replies at an address this consumer may not write to."""


def reply_address_patterns(value: str | Iterable[str] | None) -> tuple[str, ...]:
	"""Returns the patterns of a setting: one per line (or an iterable of them), blanks dropped."""
	lines = value.splitlines() if isinstance(value, str) else list(value or ())
	return tuple(dict.fromkeys(line.strip() for line in lines if line and line.strip()))


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
	return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


@dataclass(frozen=True)
class ReplyAddressPolicy:
	"""The addresses a consumer may reply to: ``own`` ones (by name or prefix) and the admin's ``patterns``."""

	broker: str  # what an address is, in messages: "Kafka topic", "RabbitMQ queue"
	own: tuple[str, ...] = ()
	own_prefixes: tuple[str, ...] = ()
	patterns: tuple[str, ...] = ()

	def allows(self, address: str) -> bool:
		"""Tells whether a reply may be written to ``address``."""
		if address in self.own or address.startswith(self.own_prefixes):
			return True
		return any(_compiled(pattern).fullmatch(address) for pattern in self.patterns)

	def check(self, address: str | None) -> None:
		"""Raises ReplyAddressRefused, saying what is allowed and where to allow more, for a refused address.

		A request without a reply address gets no reply, so it passes.
		"""
		if not address or self.allows(address):
			return
		allowed = [*self.own, *(f"{prefix}…" for prefix in self.own_prefixes), *self.patterns]
		raise ReplyAddressRefused(
			f"The request asks for its replies at {self.broker} {address!r}, where this consumer may"
			f" not write them (allowed: {', '.join(map(repr, allowed)) or 'none'}); its handlers did"
			" not run.",
			hint=f"If requesters rightly use that address, list it (or a pattern such as"
			f" 'billing.replies.*') in {SETTING} so that their later requests are answered; otherwise"
			" the request tried to make this responder write where it should not.",
		)
