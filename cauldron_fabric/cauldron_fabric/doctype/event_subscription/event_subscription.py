"""Event Subscription: which events go where, in which form, how persistently and how fast.

Validation compiles the subscription with the core (patterns, content filter, payload form,
destination, webhook settings, retries), so every problem shows on save, not as dead letters
later. Any change makes every process reload its routing index after the commit.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import frappe
from frappe import _
from frappe.model.document import Document

from cauldron_fabric.core.delivery import AddressRefused, SubscriptionInvalid, generate_secret
from cauldron_fabric.core.delivery.addresses import HostResolutionSlow, HostUnresolvable
from cauldron_fabric.core.errors import FabricError
from cauldron_fabric.delivery.connections import webhook_address_policy
from cauldron_fabric.delivery.dead_letters import dead_letter_pending_deliveries
from cauldron_fabric.delivery.schedules import invalid_cron, utc_run_times_stored
from cauldron_fabric.delivery.subscriptions import (
	compile_subscription,
	fill_empty_numbers,
	registered_handlers,
	subscriptions_changed,
)

SAVE_RESOLVE_SECONDS = 1.0  # how long a save waits on DNS to warn of a refused webhook address
DEFAULTED_NUMBERS = ("max_attempts", "initial_delay", "max_delay", "jitter", "webhook_timeout")


class EventSubscription(Document):
	def validate(self) -> None:
		if self.enabled:
			self.disabled_reason = None  # enabled again: whatever disabled it is dealt with
		self.keep_a_signing_secret()
		fill_empty_numbers(self, DEFAULTED_NUMBERS)
		self.validate_webhook_url()
		self.warn_of_a_refused_address()
		self.validate_header_values()
		self.validate_handler()
		self.validate_schedules()
		self.keep_trigger_times()
		self.compile()

	def keep_a_signing_secret(self) -> None:
		# Every webhook is signed: receivers must be able to tell our requests from forgeries. A
		# copy (Desk's Duplicate) carries the "*****" its form showed, under which Frappe stores
		# nothing: that is no secret either, and the copy gets one of its own.
		if self.destination_type == "Webhook" and not self.get_password("webhook_secret", False):
			self.webhook_secret = generate_secret()

	def validate_header_values(self) -> None:
		# A copied header row carries "*****" too: sent as it is stored, the header would be empty.
		for row in self.webhook_headers or []:
			if row.value and row.is_dummy_password(row.value) and not row.get_password("value", False):
				frappe.throw(
					_(
						"Header {0}: its value is stored encrypted and was not copied with the row; type its value again."
					).format(frappe.bold(row.header)),
					title=_("Destination"),
				)

	def validate_webhook_url(self) -> None:
		# The URL is a plain Data field, shown in lists and copied into delivery errors: a
		# password in it would be readable by everyone who reads subscriptions.
		if self.destination_type == "Webhook" and urlsplit(self.webhook_url or "").password is not None:
			frappe.throw(
				_(
					"The webhook URL contains a password. Remove it from the URL and add a header row instead: Authorization = Basic followed by the base64 of user:password. Header values are stored encrypted."
				),
				title=_("Destination"),
			)

	def warn_of_a_refused_address(self) -> None:
		"""Warns on save when deliveries to the URL's address will be refused (a private, loopback
		or link-local address the allow-list does not name), or when its host name does not
		resolve now; the check at each delivery stays the rule (what a name resolves to may change).

		A name is resolved for at most ``SAVE_RESOLVE_SECONDS``: a slow DNS delays the save that
		long and gives no warning.
		"""
		host = urlsplit(self.webhook_url or "").hostname
		if self.destination_type != "Webhook" or not host:
			return
		allowed = frappe.db.get_single_value("Fabric Settings", "webhook_allowed_networks")
		try:
			webhook_address_policy(allowed).resolve(host, 443, within=SAVE_RESOLVE_SECONDS)
		except AddressRefused as exc:
			frappe.msgprint(
				_("Deliveries to this URL will be refused: {0}").format(frappe.utils.escape_html(str(exc))),
				title=_("Destination"),
				indicator="orange",
			)
		except HostResolutionSlow:
			pass  # slow DNS: judged at delivery
		except HostUnresolvable:
			frappe.msgprint(
				_(
					"The host name {0} does not resolve now, so deliveries will wait and be retried until it does. Check its spelling."
				).format(frappe.bold(frappe.utils.escape_html(host))),
				title=_("Destination"),
				indicator="orange",
			)
		except FabricError:
			pass  # the allow-list is refused by Fabric Settings' own check; delivery reports the rest

	def validate_handler(self) -> None:
		if self.destination_type != "In-app handler":
			return
		handlers = registered_handlers()
		if (self.handler or "").strip() not in handlers:
			known = ", ".join(sorted(handlers)) or _("none: no installed app registers one")
			frappe.throw(
				_(
					"Handler {0} is not registered. An app must list it under fabric_handlers in its hooks.py. Registered: {1}."
				).format(frappe.bold(self.handler or ""), known),
				title=_("Destination"),
			)

	def validate_schedules(self) -> None:
		for row in self.schedules or []:
			if invalid_cron(row.cron):
				frappe.throw(
					_(
						"Row {0}: {1} is not a cron expression. Write five fields: minute hour day month weekday, e.g. 0 7 * * 1-5."
					).format(row.idx, frappe.bold(row.cron or "")),
					title=_("Scheduled triggers"),
				)

	def keep_trigger_times(self) -> None:
		# The scheduler claims a trigger by writing its last run times with a conditional UPDATE,
		# behind the back of any form open on the subscription; saving that form would write
		# its older value back and fire the same run time again. The stored value wins, read
		# with a lock so the scheduler cannot claim in between (it claims after this commits).
		if self.is_new() or not self.schedules:
			return
		# Before the migrate that adds last_run_utc (new code, old table) there is none to keep.
		utc_column = "last_run_utc" if utc_run_times_stored() else "NULL"
		stored = {
			name: (triggered, utc)
			for name, triggered, utc in frappe.db.sql(
				f"""SELECT name, last_triggered_at, {utc_column} FROM `tabEvent Subscription Schedule`
				WHERE parent = %s AND parenttype = 'Event Subscription' FOR UPDATE""",
				(self.name,),
			)
		}
		for row in self.schedules:
			if row.name in stored:
				row.last_triggered_at, row.last_run_utc = stored[row.name]

	def compile(self) -> None:
		secret = self.webhook_secret
		if secret and self.is_dummy_password(secret):
			secret = self.get_password("webhook_secret", raise_exception=False)
		# A value typed now is checked too; a stored one (shown as "*****") was checked when typed.
		headers = [
			(h.header, "" if not h.value or h.is_dummy_password(h.value) else h.value)
			for h in self.webhook_headers or []
		]
		problems = []
		try:
			compile_subscription(self, secret, headers)
		except SubscriptionInvalid as exc:
			problems = list(exc.problems)
		if not problems:
			self.problem = None  # it compiles again: no longer shown as broken
			return
		items = "".join(f"<li><pre>{frappe.utils.escape_html(p)}</pre></li>" for p in problems)
		if not self.enabled and not self.is_new():
			# A stored subscription that stopped compiling (an upgrade tightened validation)
			# must still be switched off while someone works out the fix: it keeps its
			# problem on show, and enabling it again asks for the fix.
			self.problem = " ".join(problems)
			frappe.msgprint(
				_("Saved disabled. It cannot be enabled until this is fixed:") + f"<ul>{items}</ul>",
				title=_("Invalid subscription"),
				indicator="orange",
			)
			return
		frappe.throw(
			_("This subscription cannot work as set up:") + f"<ul>{items}</ul>",
			title=_("Invalid subscription"),
		)

	def on_update(self) -> None:
		subscriptions_changed()

	def on_trash(self) -> None:
		# Its deliveries stay as history (hooks: ignore_links_on_delete); those still on their way
		# end now as dead letters saying why, as a disabled subscription's do at their next attempt.
		dead_letter_pending_deliveries(
			self.name,
			f"Subscription {self.name} was deleted before this event was delivered; discard the dead "
			"letter, or create a subscription to send such events again.",
		)
		subscriptions_changed()

	def before_rename(self, old: str, new: str, merge: bool = False) -> None:
		frappe.throw(
			_("Subscriptions cannot be renamed: their deliveries and dead letters refer to the name.")
		)
