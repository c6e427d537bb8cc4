"""Webhook hosts written in the other spellings of a private address are refused like the address.

URL parsers and the system resolver read ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` and ``127.1``
as 127.0.0.1 (inet_aton's forms), and IPv6 literals can embed an IPv4 address: none may pass for
a public host name.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from cauldron_fabric.core.delivery.addresses import AddressPolicy, AddressRefused
from cauldron_fabric.core.delivery.webhook import WebhookSender, WebhookTarget
from conftest import BODY


@pytest.mark.parametrize(
	"url, reason",
	[
		("http://2130706433/", "loopback"),
		("http://0177.0.0.1/", "loopback"),
		("http://017700000001/", "loopback"),
		("http://0x7f000001/", "loopback"),
		("http://0x7f.1/", "loopback"),
		("http://127.1/", "loopback"),
		("http://0/", "unspecified"),
		("http://2852039166/", "metadata"),  # 169.254.169.254
		("http://0xa9fea9fe/", "metadata"),
		("http://[::ffff:127.0.0.1]/", "loopback"),
		("http://[0:0:0:0:0:ffff:7f00:1]/", "loopback"),
		("http://[::1]:8080/", "loopback"),
		("http://[::]/", "unspecified"),
		("http://[fe80::1%25lo]/", "link-local"),
		("http://[::ffff:169.254.169.254]/", "metadata"),
	],
)
def test_other_spellings_of_a_private_address_are_refused(url, reason):
	host = urlsplit(url).hostname
	with pytest.raises(AddressRefused, match=reason):
		AddressPolicy().resolve(host, 80)


def test_a_decimal_loopback_host_is_refused_before_anything_is_sent(receiver):
	sender = WebhookSender()
	try:
		outcome = sender.send(WebhookTarget(receiver.url(host="2130706433")), "evt-dec", BODY)
	finally:
		sender.close()
	assert (outcome.ok, outcome.retryable) == (False, False) and "loopback" in outcome.error
	assert receiver.requests == []


def test_an_allowed_loopback_network_covers_its_decimal_spelling_too():
	# The admin allowed the network, not a spelling of it: the check is on the address.
	policy = AddressPolicy.from_allow_list(["127.0.0.0/8"])
	assert policy.resolve("2130706433", 80) == "127.0.0.1"
	with pytest.raises(AddressRefused):
		policy.resolve("0x0a000001", 80)  # 10.0.0.1: not in the allowed network
