"""Webhook delivery's address guard: non-public addresses refused unless allowed, and the request
sent to the address that was checked (no DNS rebinding, no parser confusion), over HTTP and HTTPS."""

from __future__ import annotations

import ipaddress
import ssl
import subprocess

import pytest

from cauldron_fabric.core.delivery.addresses import AddressPolicy, AddressRefused, refusal_reason
from cauldron_fabric.core.delivery.webhook import (
	WebhookSender,
	WebhookTarget,
)
from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.testing.http_receiver import Receiver
from conftest import BODY


@pytest.mark.parametrize(
	"address, reason",
	[
		("127.0.0.1", "loopback"),
		("10.1.2.3", "private"),
		("172.16.0.9", "private"),
		("192.168.1.1", "private"),
		("169.254.169.254", "metadata"),
		("169.254.10.10", "link-local"),
		("100.64.0.1", "not publicly routable"),
		("100.100.100.200", "metadata"),
		("224.0.0.1", "multicast"),
		("0.0.0.0", "unspecified"),
		("240.0.0.1", "reserved"),
		("::1", "loopback"),
		("fe80::1", "link-local"),
		("fc00::1", "private"),
		("fec0::1", "site-local"),
		("fd00:ec2::254", "metadata"),
		("ff02::1", "multicast"),
		("::ffff:127.0.0.1", "loopback address (embedded"),
		("::ffff:10.0.0.1", "private address (embedded"),
		("2002:7f00:1::1", "loopback address (embedded"),
		("64:ff9b::a00:1", "private address (embedded"),
	],
)
def test_non_public_addresses_are_refused(address, reason):
	assert reason in refusal_reason(ipaddress.ip_address(address))
	with pytest.raises(AddressRefused, match="allow-list"):
		AddressPolicy().resolve(address, 443)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass_the_guard(address):
	assert refusal_reason(ipaddress.ip_address(address)) is None
	assert AddressPolicy().resolve(address, 443) == address.removeprefix("::ffff:")


def test_a_name_resolving_to_any_private_address_is_refused():
	resolver = {"mixed.example": ["93.184.216.34", "10.0.0.5"], "public.example": ["93.184.216.34"]}
	policy = AddressPolicy(resolver=lambda host, port: resolver[host])
	with pytest.raises(AddressRefused, match=r"10\.0\.0\.5, a private address"):
		policy.resolve("mixed.example", 443)
	assert policy.resolve("public.example", 443) == "93.184.216.34"
	with pytest.raises(AddressRefused, match="metadata endpoint"):
		policy.resolve("metadata.google.internal", 80)


def test_only_an_entry_naming_a_metadata_endpoint_itself_opens_it():
	# The metadata endpoint hands out the server's credentials (with a custom header such as
	# Metadata-Flavor: Google): a .internal entry for the admin's receivers, or a link-local
	# network, must not open it on the side.
	names = {"metadata.google.internal": ["169.254.169.254"], "n8n.internal": ["10.0.0.5"]}
	policy = AddressPolicy.from_allow_list([".internal", "169.254.0.0/16"], resolver=lambda h, p: names[h])
	assert policy.resolve("n8n.internal", 80) == "10.0.0.5"
	assert policy.resolve("169.254.10.10", 80) == "169.254.10.10"
	for host in ("metadata.google.internal", "169.254.169.254", "::ffff:169.254.169.254"):
		with pytest.raises(AddressRefused, match="metadata"):
			policy.resolve(host, 80)
	named = AddressPolicy.from_allow_list(
		["metadata.google.internal", "169.254.169.254/32"], resolver=lambda h, p: names[h]
	)
	assert named.resolve("metadata.google.internal", 80) == "169.254.169.254"
	assert named.resolve("169.254.169.254", 80) == "169.254.169.254"


def test_the_allow_list_takes_networks_and_host_names():
	policy = AddressPolicy.from_allow_list(["127.0.0.0/8", "n8n.internal", ".corp.example", " "])
	assert policy.resolve("127.0.0.5", 80) == "127.0.0.5"
	assert policy.resolve("::ffff:127.0.0.1", 80) == "127.0.0.1"
	with pytest.raises(AddressRefused):
		policy.resolve("10.0.0.1", 80)
	assert policy.allows_host("n8n.internal") and policy.allows_host("hooks.corp.example")
	assert not policy.allows_host("n8n.internal.evil.example")
	with pytest.raises(ConfigurationError, match="neither a network nor a host name"):
		AddressPolicy.from_allow_list(["10.0.0.0/33x"])


def test_loopback_receivers_are_refused_without_the_allow_list(receiver):
	sender = WebhookSender()
	for url in (receiver.url(), receiver.url(host="localhost")):
		outcome = sender.send(WebhookTarget(url), "evt-12", BODY)
		assert (outcome.ok, outcome.retryable) == (False, False) and "loopback" in outcome.error
	assert receiver.requests == []
	sender.close()


def test_a_backslash_cannot_send_the_request_to_another_host_than_the_checked_one(receiver):
	# Python's urlsplit reads public.example as the host of this URL; urllib3, which makes
	# the connection, ends the authority at the backslash and would dial 127.0.0.1.
	url = f"http://127.0.0.1:{receiver.port}\\@public.example/hook"
	sender = WebhookSender(AddressPolicy(resolver=lambda host, port: ["93.184.216.34"]))
	try:
		outcome = sender.send(WebhookTarget(url, timeout=2), "evt-backslash", BODY)
	finally:
		sender.close()
	assert receiver.requests == []
	assert (outcome.ok, outcome.retryable) == (False, False) and "backslash" in outcome.error
	with pytest.raises(ConfigurationError, match="backslash"):
		WebhookTarget(url).validate()


def test_the_request_goes_to_the_checked_address_with_the_original_host_header(receiver):
	# receiver.test exists in no DNS: the request can only arrive through the pinned address.
	policy = AddressPolicy.from_allow_list(["127.0.0.0/8"], resolver=lambda host, port: ["127.0.0.1"])
	sender = WebhookSender(policy)
	assert sender.send(WebhookTarget(receiver.url(host="receiver.test")), "evt-13", BODY).ok
	assert receiver.requests[0].headers["host"] == f"receiver.test:{receiver.port}"
	sender.close()


def test_https_to_a_pinned_address_verifies_the_certificate_of_the_host_name(tmp_path):
	key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
	command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=receiver.test"
	command += " -addext subjectAltName=DNS:receiver.test"
	subprocess.run([*command.split(), "-keyout", key, "-out", cert], check=True, capture_output=True)
	context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	context.load_cert_chain(cert, key)
	server = Receiver().start(context)
	try:
		resolver = lambda host, port: ["127.0.0.1"]  # noqa: E731
		policy = AddressPolicy.from_allow_list(["127.0.0.0/8"], resolver=resolver)
		sender = WebhookSender(policy, verify=str(cert))
		url = server.url(host="receiver.test", scheme="https")
		assert sender.send(WebhookTarget(url), "evt-14", BODY).ok
		other = AddressPolicy.from_allow_list(["127.0.0.0/8", "other.test"], resolver=resolver)
		mismatch = WebhookSender(other, verify=str(cert)).send(
			WebhookTarget(server.url(host="other.test", scheme="https")), "evt-14", BODY
		)
		assert not mismatch.ok and mismatch.retryable and "other.test" in mismatch.error
		assert len(server.requests) == 1
	finally:
		server.stop()
