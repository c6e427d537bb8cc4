"""Fabric Circuits of both kinds and the 410 Gone reason on Event Subscription, as an admin sees them.

The circuits are made in the Redis the web server reads (this site's prefix), as the workers make
them: a request target's through its breaker, a webhook endpoint's through the endpoint store.
The 410 comes from a real receiver, through the delivery worker.
"""

from __future__ import annotations

import json
import secrets
import time

import frappe
from frappe.permissions import add_permission
from frappe.utils import format_datetime
from frappe.utils.password import update_password

from cauldron_fabric.cauldron_fabric.doctype.fabric_circuit.fabric_circuit import as_row
from cauldron_fabric.consume.requesting import site_breaker
from cauldron_fabric.core.delivery.circuit import EndpointPolicy
from cauldron_fabric.delivery.circuits import site_webhook_circuits
from cauldron_fabric.testing.http_receiver import Receiver, Reply
from cauldron_fabric.tests.browser.desk import Desk, DeskCase, server_url
from cauldron_fabric.tests.test_delivery_support import (
	deliver,
	loopback_allowed,
	make_subscription,
	marker,
	remove_subscription,
	save_todo,
)

# A desk user without a fabric role, who may read circuits (a role permission an admin could give)
# but must not reset them.
VIEWER = "fabric.browser.viewer@example.com"
VIEWER_ROLE = "Desk User"


def webhook_circuit(endpoint: str, failures: int, opened_at: float, probe_at: float | None = None) -> None:
	"""Records ``failures`` in a row of ``endpoint`` at ``opened_at``, as a delivery worker does;
	``probe_at`` then grants the probe (half-open)."""
	store = site_webhook_circuits().store
	for _ in range(failures):
		store.record_failure(endpoint, opened_at, EndpointPolicy())
	if probe_at is not None:
		store.acquire(endpoint, probe_at, 20.0)


def webhook_state(endpoint: str) -> str | None:
	"""Returns the state of ``endpoint``'s circuit in Redis; None when it is forgotten."""
	found = [s for s in site_webhook_circuits().states() if s.target == endpoint]
	return found[0].state if found else None


def request_state(target: str) -> str | None:
	"""Returns the state of request target ``target``'s circuit in Redis; None when it is forgotten."""
	found = [s for s in site_breaker().states() if s.target == target]
	return found[0].state if found else None


class TestFabricCircuits(DeskCase):
	def setUp(self):
		super().setUp()
		self.tag = f"fabric-browser-{frappe.generate_hash(length=8)}"

	def request_circuit(self) -> str:
		"""Opens the circuit of a new request target; reset after."""
		target = f"{self.tag}.request"
		breaker = site_breaker()
		for _ in range(breaker.policy.failure_threshold):
			breaker.failed(target)
		self.addCleanup(breaker.store.reset, target)
		return target

	def endpoint(self, name: str) -> str:
		"""Returns a new webhook endpoint's name (scheme://host:port), its circuit reset after."""
		endpoint = f"http://{self.tag}-{name}.example:8080"
		self.addCleanup(site_webhook_circuits().store.reset, endpoint)
		return endpoint

	def test_the_list_shows_both_kinds_with_their_state_colours(self):
		target = self.request_circuit()
		now = float(int(time.time()))
		down, probing, recovering = (self.endpoint(n) for n in ("down", "probing", "recovering"))
		webhook_circuit(down, 5, now)
		webhook_circuit(probing, 5, now - 60, probe_at=now)
		webhook_circuit(recovering, 2, now)  # failures on record, still closed
		self.desk.open_list("Fabric Circuit", target=f'["like", "%{self.tag}%"]')
		expected = {
			target: ("Request target", "Open", "red"),
			down: ("Webhook endpoint", "Open", "red"),
			probing: ("Webhook endpoint", "Half-open", "orange"),
			recovering: ("Webhook endpoint", "Closed", "green"),
		}
		for name, (kind, label, colour) in expected.items():
			with self.subTest(circuit=name):
				pill = self.desk.row_indicator(name)
				self.assertEqual(pill.text.strip(), label)
				self.assertIn(colour, pill.get_attribute("class"))
				self.assertIn(kind, self.desk.list_row(name).text)
		self.assertEqual(sorted(self.desk.list_names()), sorted(expected))
		self.desk.open_list("Fabric Circuit", kind="Request target", target=f'["like", "%{self.tag}%"]')
		self.desk.wait(lambda _: self.desk.list_names() == [target], "the list of request targets only")

	def test_a_webhook_endpoint_circuit_shows_its_endpoint_state_failures_and_times(self):
		endpoint = self.endpoint("down")
		now = float(int(time.time()))
		webhook_circuit(endpoint, 6, now)
		(state,) = [s for s in site_webhook_circuits().states() if s.target == endpoint]
		row = as_row(state)
		self.desk.open_form("Fabric Circuit", endpoint)
		# The endpoint is the form's title (Frappe hides the field a document is named by).
		title = self.desk.find(".page-head .title-text", "the form's title")
		self.desk.wait(lambda _: title.text.strip() == endpoint, "the endpoint as the title")
		self.desk.wait_field_text("kind", "Webhook endpoint")
		self.desk.wait_field_text("state", "open")
		self.desk.wait_field_text("failures", "6")
		for field in ("opened_at", "retry_at", "last_failure_at"):
			with self.subTest(field=field):
				# Followed by the system's time zone when the user's is another.
				shown = self.desk.field_text(field)
				self.assertTrue(shown.startswith(format_datetime(row[field])), shown)
		self.assertEqual((row["retry_at"] - row["opened_at"]).total_seconds(), 30)
		head = self.desk.find(".page-head .indicator-pill", "the form's indicator")
		self.desk.wait(lambda _: head.text.strip() == "Open", "the form to say Open")

	def reset_from_the_list(self, name: str) -> None:
		"""Opens circuit ``name`` from the list, presses Reset and waits for the list without it."""
		self.desk.open_list("Fabric Circuit", target=name)
		self.desk.list_row(name)
		self.desk.open_form("Fabric Circuit", name)
		self.desk.click_button("Reset")
		self.desk.alert(f"Circuit of {name} closed")
		# Other circuits of the site may be listed (Desk may drop the route's filter on the way back).
		back = (
			"return window.cur_list && cur_list.doctype === 'Fabric Circuit' && !cur_list.data.some("
			f"(row) => row.name === {json.dumps(name)})"
		)
		self.desk.wait(lambda d: d.execute_script(back), "the list of circuits, without it")

	def test_reset_closes_a_circuit_of_either_kind(self):
		target = self.request_circuit()
		endpoint = self.endpoint("down")
		webhook_circuit(endpoint, 5, time.time())
		with self.subTest(kind="Request target"):
			self.reset_from_the_list(target)
			self.assertIsNone(request_state(target))
		with self.subTest(kind="Webhook endpoint"):
			self.reset_from_the_list(endpoint)
			self.assertIsNone(webhook_state(endpoint))

	def viewer_desk(self) -> Desk:
		"""Returns a browser logged in as ``VIEWER``, who may read circuits but has no fabric role."""
		before = set(frappe.get_all("Custom DocPerm", {"parent": "Fabric Circuit"}, pluck="name"))
		add_permission("Fabric Circuit", VIEWER_ROLE)
		if not frappe.db.exists("User", VIEWER):
			user = {
				"doctype": "User",
				"email": VIEWER,
				"first_name": "Fabric Viewer",
				"send_welcome_email": 0,
			}
			frappe.get_doc({**user, "roles": [{"role": VIEWER_ROLE}]}).insert(ignore_permissions=True)
		password = secrets.token_urlsafe(16)
		update_password(VIEWER, password)
		frappe.db.commit()
		self.addCleanup(self.remove_viewer, before)
		desk = Desk(server_url())
		self.addCleanup(desk.quit)
		desk.login(VIEWER, password)
		return desk

	def remove_viewer(self, custom_perms_before: set[str]) -> None:
		frappe.db.rollback()
		added = frappe.get_all("Custom DocPerm", {"parent": "Fabric Circuit"}, pluck="name")
		frappe.db.delete(
			"Custom DocPerm", {"name": ("in", [n for n in added if n not in custom_perms_before])}
		)
		frappe.delete_doc("User", VIEWER, ignore_permissions=True, force=True)
		frappe.db.commit()
		frappe.clear_cache(doctype="Fabric Circuit")

	def test_only_a_fabric_or_system_manager_may_reset(self):
		target = self.request_circuit()
		endpoint = self.endpoint("down")
		webhook_circuit(endpoint, 5, time.time())
		desk = self.viewer_desk()
		post = """const [method, args, done] = arguments;
			fetch("/api/method/" + method, {method: "POST", body: JSON.stringify(args),
				headers: {"Content-Type": "application/json", "X-Frappe-CSRF-Token": frappe.csrf_token}})
			.then((r) => r.text().then((text) => done([r.status, text])));"""
		module = "cauldron_fabric.cauldron_fabric.doctype.fabric_circuit.fabric_circuit"
		for name, method, args in (
			(target, "cauldron_fabric.api.requests.reset_circuit", {"target": target}),
			(endpoint, f"{module}.reset_webhook_circuit", {"endpoint": endpoint}),
		):
			with self.subTest(circuit=name):
				desk.open_form("Fabric Circuit", name)
				desk.wait_field_text("state", "open")  # the viewer reads it...
				# ...and once the form's script has run (it hides the timeline first)...
				desk.wait(lambda _: desk.visible(".form-footer") is None, "the form's script to run")
				self.assertIsNone(desk.visible(desk.button("Reset")))  # ...is offered no Reset
				status, answer = desk.driver.execute_async_script(post, method, args)
				self.assertEqual(status, 403, answer)
				self.assertIn("Only System Manager or Fabric Manager may do this", answer)
		self.assertEqual((request_state(target), webhook_state(endpoint)), ("open", "open"))
		# The Fabric Manager role alone is enough (the tests' desk user is a System Manager too).
		frappe.get_doc("User", VIEWER).add_roles("Fabric Manager")
		frappe.db.commit()
		# The save cleared the cached roles before its commit: a request of the viewer's open page
		# in between may cache the old ones again, so the form is opened until the role shows.
		for _ in range(5):
			frappe.clear_cache(user=VIEWER)
			desk.open_form("Fabric Circuit", endpoint)
			desk.wait(lambda _: desk.visible(".form-footer") is None, "the form's script to run")
			if desk.visible(desk.button("Reset")):
				break
			time.sleep(1)
		desk.click_button("Reset")
		desk.alert(f"Circuit of {endpoint} closed")
		self.assertIsNone(webhook_state(endpoint))


class TestGoneSubscription(DeskCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		allow = loopback_allowed()  # the receiver is local, and saving must not warn of it
		allow.__enter__()
		cls.addClassCleanup(allow.__exit__, None, None, None)
		cls.receiver = Receiver().start()
		cls.addClassCleanup(cls.receiver.stop)

	def test_a_subscription_disabled_by_410_says_why_until_enabled_again(self):
		tag = marker()
		path = f"/gone-{tag}"
		self.receiver.reply(path, Reply(410, b"workflow deleted"))
		subscription = make_subscription(tag, webhook_url=self.receiver.url(path)).name
		self.addCleanup(remove_subscription, subscription)
		self.addCleanup(frappe.db.delete, "ToDo", {"description": tag})
		save_todo(tag)
		deliver(subscription)
		reason = frappe.db.get_value("Event Subscription", subscription, "disabled_reason")
		self.assertIn("answered 410 Gone", reason or "")
		self.desk.open_form("Event Subscription", subscription)
		intro = self.desk.find(".form-message", "the form's intro")
		self.assertEqual(intro.text.strip(), reason)
		self.assertIn("orange", intro.get_attribute("class"))
		self.desk.wait_field_text("disabled_reason", reason)
		timeline = self.desk.find(".form-footer .new-timeline", "the timeline")
		self.assertIn("410 Gone", timeline.text)
		self.desk.open_list("Event Subscription")
		pill = self.desk.row_indicator(subscription)
		self.assertEqual(pill.text.strip(), "Receiver gone")
		self.assertIn("orange", pill.get_attribute("class"))
		self.desk.open_form("Event Subscription", subscription)
		self.desk.click(f'{self.desk.field("enabled")} input[type="checkbox"]', "the Enabled box")
		self.desk.click(".page-actions .primary-action", "the Save button")
		self.desk.wait(
			lambda d: d.execute_script("return !cur_frm.is_dirty() && cur_frm.doc.enabled === 1"),
			"the form to be saved enabled",
		)
		self.desk.wait(lambda _: self.desk.visible(".form-message") is None, "the intro to go")
		self.assertIsNone(self.desk.visible(self.desk.field("disabled_reason")))
		self.committed()
		stored = frappe.db.get_value("Event Subscription", subscription, ["enabled", "disabled_reason"])
		self.assertEqual(tuple(stored), (1, None))
