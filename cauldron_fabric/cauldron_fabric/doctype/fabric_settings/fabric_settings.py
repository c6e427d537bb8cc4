"""Fabric Settings: what is emitted, and the Kafka or RabbitMQ connection that turns publishing on."""

from __future__ import annotations

import re

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import cint, flt

from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.naming import template_keeps_entity_order, validate_topic_template
from cauldron_fabric.delivery.subscriptions import fill_empty_numbers
from cauldron_fabric.emit.held import when_transaction_ends
from cauldron_fabric.emit.policy import DEFAULT_DENIED, SYSTEM_DOCTYPES, clear_policy, is_fabric_doctype

SERVER = re.compile(r"^\[?[A-Za-z0-9._:-]+\]?:(\d{1,5})\Z")
NUMBER_LIMITS = {
	"retention_days": (0, 36500),  # 0 keeps everything, and so does an empty field
	"topic_partitions": (1, 10000),
	"topic_replication": (1, 100),
	"message_timeout_ms": (1000, 3_600_000),
	"relay_batch_size": (1, 10000),
	"delivery_batch_size": (1, 5000),
	"handler_overdue_seconds": (1, 86400),
	"consumer_max_attempts": (1, 20),
	"consumer_crash_limit": (1, 20),
	"processed_event_retention_days": (0, 36500),  # 0 keeps them for ever; empty is the default
	"circuit_failure_threshold": (1, 10000),
	"circuit_window_seconds": (1, 86400),
	"circuit_open_seconds": (1, 86400),
	# send_request's own limit (api.requests.MAX_TIMEOUT); a fraction of a second is allowed.
	"request_timeout_seconds": (0, 120),
	"publish_rate_limit": (0, 1_000_000),  # 0 turns the limit off; empty is the default
	# More letters than a bulk call takes (api.dead_letters.MAX_MATCHING) would never be a job.
	"dead_letters_in_request": (1, 5000),
}
# A field left empty takes its default. A typed 0 once meant the default too; it cannot work in
# any of these, so their limits now refuse it, except in processed_event_retention_days, where it
# keeps the marks for ever (an emptied field must not quietly drop every message's protection
# against being handled twice), and publish_rate_limit, where it turns the limit off.
# retention_days alone keeps "empty" as 0: keep every event.
EMPTY_MEANS_DEFAULT = tuple(fieldname for fieldname in NUMBER_LIMITS if fieldname != "retention_days")
FRACTIONAL = {"request_timeout_seconds"}  # more than the lower limit, not equal to it
NUMBER_HINTS = {
	"consumer_max_attempts": "1 runs the handler once, with no retry.",
	"processed_event_retention_days": "0 keeps them for ever.",
	"publish_rate_limit": "0 turns the limit off.",
}


def readable_certificates(pem: str) -> bool:
	"""Tells whether ``pem`` holds X.509 certificates that can be read.

	The header alone is not enough: librdkafka reads the whole text only when the relay builds
	its producer, and a broken body (a line lost in copying) then stops the relay.
	"""
	from cryptography import x509

	try:
		return bool(x509.load_pem_x509_certificates(pem.encode()))
	except ValueError:
		return False


def forget_settings() -> None:
	"""Drops this process's policy and Frappe's Redis copy of the settings, which every process
	reads: the fabric's own events cache it, uncommitted, while the save is still open."""
	clear_policy()
	frappe.cache.delete_value(frappe.get_document_cache_key("Fabric Settings", "Fabric Settings"))


class FabricSettings(Document):
	def validate(self) -> None:
		self.validate_bootstrap_servers()
		self.validate_security()
		self.validate_topic_template()
		self.validate_numbers()
		self.validate_rabbitmq()
		self.validate_webhook_allow_list()
		self.validate_reply_addresses()
		self.validate_doctype_lists()

	def validate_bootstrap_servers(self) -> None:
		servers = [s.strip() for s in (self.bootstrap_servers or "").split(",") if s.strip()]
		for server in servers:
			match = SERVER.match(server)
			if not match or not 0 < int(match.group(1)) < 65536:
				frappe.throw(
					_(
						"Bootstrap server {0} is not host:port. Write them as host:port, comma-separated."
					).format(frappe.bold(server)),
					title=_("Kafka settings"),
				)
		self.bootstrap_servers = ",".join(servers)

	def validate_security(self) -> None:
		if (self.security_protocol or "").startswith("SASL") and not (
			self.sasl_username and self.sasl_password
		):
			frappe.throw(
				_("{0} needs a SASL username and password. Fill both, or choose PLAINTEXT or SSL.").format(
					self.security_protocol
				),
				title=_("Kafka settings"),
			)
		pem = (self.ssl_ca or "").strip()
		if pem and not readable_certificates(pem):
			frappe.throw(
				_(
					"The TLS CA certificate must be in PEM form (-----BEGIN CERTIFICATE----- …), "
					"pasted whole: its text could not be read as a certificate."
				)
			)

	def validate_topic_template(self) -> None:
		try:
			validate_topic_template(self.topic_template or "")
		except ConfigurationError as exc:
			frappe.throw(str(exc), title=_("Topic naming rule"))
		if not template_keeps_entity_order(self.topic_template):
			frappe.msgprint(
				_(
					"The topic naming rule uses {type}: one document's events go to several topics and consumers may see them out of order."
				),
				indicator="orange",
				alert=True,
			)

	def validate_numbers(self) -> None:
		fill_empty_numbers(self, EMPTY_MEANS_DEFAULT)
		for fieldname, (low, high) in NUMBER_LIMITS.items():
			value = flt(self.get(fieldname)) if fieldname in FRACTIONAL else cint(self.get(fieldname))
			if not low <= value <= high or (fieldname in FRACTIONAL and value == low):
				frappe.throw(self.number_refusal(fieldname, low, high))

	def number_refusal(self, fieldname: str, low: int, high: int) -> str:
		label, default = _(self.meta.get_label(fieldname)), self.meta.get_field(fieldname).default
		if fieldname in FRACTIONAL:
			message = _("{0} must be more than {1} and at most {2}.").format(label, low, high)
		else:
			message = _("{0} must be between {1} and {2}.").format(label, low, high)
		if fieldname in EMPTY_MEANS_DEFAULT:
			hint = NUMBER_HINTS.get(fieldname, "")
			message = " ".join(filter(None, (message, hint, _("Leave it empty for {0}.").format(default))))
		return message

	def validate_rabbitmq(self) -> None:
		from cauldron_fabric.delivery.connections import validate_rabbitmq_url

		if (self.rabbitmq_url or "").strip():
			try:
				self.rabbitmq_url = validate_rabbitmq_url(self.rabbitmq_url)
			except ConfigurationError as exc:
				frappe.throw(str(exc), title=_("RabbitMQ settings"))
		exchange = (self.rabbitmq_exchange or "").strip()
		if exchange and not re.match(r"^[A-Za-z0-9._:-]{1,255}\Z", exchange):
			frappe.throw(
				_("Exchange {0} may only use letters, digits, '.', '_', ':' and '-'.").format(
					frappe.bold(exchange)
				),
				title=_("RabbitMQ settings"),
			)
		self.rabbitmq_exchange = exchange or "cauldron.events"

	def validate_webhook_allow_list(self) -> None:
		from cauldron_fabric.delivery.connections import webhook_address_policy

		try:
			webhook_address_policy(self.webhook_allowed_networks)
		except ConfigurationError as exc:
			frappe.throw(str(exc), title=_("Webhook allow-list"))

	def validate_reply_addresses(self) -> None:
		from cauldron_fabric.core.consumer.reply_addresses import reply_address_patterns

		patterns = reply_address_patterns(self.allowed_reply_addresses)
		for pattern in patterns:
			if len(pattern) > 255 or any(character.isspace() for character in pattern):
				frappe.throw(
					_(
						"{0} is no reply address: write one Kafka topic or RabbitMQ queue per line, without spaces and at most 255 characters, * standing for any characters."
					).format(frappe.bold(pattern[:80])),
					title=_("Other reply addresses"),
				)
		self.allowed_reply_addresses = "\n".join(patterns)

	def validate_doctype_lists(self) -> None:
		# The emitter skips these whatever the lists say (EmitPolicy._classify), and the allow list
		# does not limit system changes: listed, they look like a choice that changes nothing, and
		# an allow list of only child tables or settings emits no document event at all.
		for fieldname in ("allowed_doctypes", "denied_doctypes"):
			for row in self.get(fieldname) or []:
				reason = self.never_emitted_reason(row.document_type, fieldname == "allowed_doctypes")
				if reason:
					frappe.throw(
						_("{0}: {1} Remove it from the list.").format(
							_(self.meta.get_label(fieldname)), reason
						),
						title=_("Which DocTypes"),
					)

	@staticmethod
	def never_emitted_reason(doctype: str, allowing: bool) -> str | None:
		"""Says why a DocType never emits document events of its own, or returns None."""
		meta = frappe.get_meta(doctype)
		if meta.istable:
			return _(
				"{0} is a child table: its rows travel inside their parent's events. List the parent DocType instead."
			).format(frappe.bold(doctype))
		if meta.get("is_virtual"):
			return _("{0} is virtual: nothing is stored, so it has no events.").format(frappe.bold(doctype))
		if is_fabric_doctype(meta):
			return _("{0} is one of the fabric's own DocTypes, which never emit events.").format(
				frappe.bold(doctype)
			)
		if allowing and doctype in DEFAULT_DENIED:
			return _("{0} is on the built-in deny list and never emits events.").format(frappe.bold(doctype))
		if allowing and (meta.issingle or doctype in SYSTEM_DOCTYPES):
			return _(
				"{0} emits system.change events, which the allow list does not limit (System change events and the deny list do)."
			).format(frappe.bold(doctype))
		return None

	def on_update(self) -> None:
		clear_policy()
		# What is built from this unsaved version must not outlive a rollback of it, also one of a
		# commit that a before_commit callback refused: no after-rollback callback runs then.
		when_transaction_ends(forget_settings)
		from cauldron_fabric.services.relay import wake_relays

		wake_relays()
