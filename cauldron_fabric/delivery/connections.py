"""Connections of Fabric Settings that deliveries use: RabbitMQ and the webhook allow-list.

The RabbitMQ URL is a Data field and must not carry the password (that one lives in the
Password field); the two are joined only in memory, when a transport is opened.
"""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

from cauldron_fabric.core.delivery import AddressPolicy
from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.ports import ConnectionReport

SCHEMES = ("amqp", "amqps")


def validate_rabbitmq_url(url: str) -> str:
	"""Returns the URL stripped; raises ConfigurationError saying how to write it."""
	text = (url or "").strip()
	parts = urlsplit(text)
	if parts.scheme not in SCHEMES or not parts.hostname:
		raise ConfigurationError(
			f"RabbitMQ URL {text!r} is not an amqp:// or amqps:// URL with a host.",
			hint="Write amqp://user@host:5672/vhost (vhost '/' is %2F); put the password in its own field.",
		)
	try:
		port = parts.port
	except ValueError:
		port = -1
	if port is not None and not 0 < port < 65536:
		raise ConfigurationError(
			f"RabbitMQ URL {text!r} has an invalid port.", hint="Use 5672 (5671 for amqps)."
		)
	if parts.password is not None:
		raise ConfigurationError(
			"The RabbitMQ URL contains a password.",
			hint="Remove it from the URL (amqp://user@host/vhost) and put it in the RabbitMQ password field, "
			"which is stored encrypted.",
		)
	return text


def rabbitmq_url_with_password(url: str, password: str | None) -> str:
	"""Returns the URL with ``password`` put into its user part (nothing to add without a user).

	A user with no password gets an empty one (``user:@host``): pika cannot parse ``user@host``
	at all, which would crash the relay instead of reporting the broker's refusal.
	"""
	parts = urlsplit(url)
	if parts.username is None:
		return url
	host = parts.netloc.rpartition("@")[2]
	user = quote(unquote(parts.username), safe="")
	return parts._replace(netloc=f"{user}:{quote(password or '', safe='')}@{host}").geturl()


def allow_list_entries(text: str | None) -> list[str]:
	"""Returns the allow-list entries of the Fabric Settings field (lines or commas)."""
	return [item.strip() for line in (text or "").splitlines() for item in line.split(",") if item.strip()]


def webhook_address_policy(text: str | None) -> AddressPolicy:
	"""Returns the webhook address policy for the allow-list; raises ConfigurationError for a bad entry."""
	return AddressPolicy.from_allow_list(allow_list_entries(text))


def check_rabbitmq_connection(
	url: str, password: str | None, exchange: str, timeout: float = 5.0
) -> ConnectionReport:
	"""Connects to RabbitMQ, checks the exchange and reports what it found or what is wrong."""
	from cauldron_fabric.core.transports.rabbitmq import RabbitMQTransport

	if not (url or "").strip():
		return ConnectionReport(False, "No RabbitMQ URL is set: nothing is published to RabbitMQ.")
	transport = RabbitMQTransport(
		rabbitmq_url_with_password(validate_rabbitmq_url(url), password), {"exchange": exchange}
	)
	try:
		return transport.check(timeout)
	finally:
		transport.close()
