"""Frappe's generic endpoints (/api/resource, frappe.client) against the fabric's DocTypes.

read_only in a DocType is a form hint only: these check that the controllers refuse what the
app's own paths alone may do, over real HTTP requests with API keys.
"""

from __future__ import annotations

import json

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import add_days, now_datetime

from cauldron_fabric.tests.test_http_support import api_token, make_user, request


def auth(token: str) -> dict:
	return {"headers": {"Authorization": token}}


def pending_delivery():
	"""Inserts a Pending Event Delivery (uncommitted) that a forged dead letter could point at."""
	delivery = frappe.new_doc("Event Delivery")
	delivery.update(
		{
			"subscription": "none",
			"event_id": frappe.generate_hash(length=10),
			"event_type": "todo.updated",
			"status": "Pending",
		}
	)
	delivery.db_insert()
	return delivery


def dead_letter():
	"""Files an open dead letter (committed), as a failed delivery would."""
	letter = frappe.get_doc(
		{"doctype": "Dead Letter", "source_type": "Delivery", "status": "Dead", "envelope": "{}"}
	).insert(ignore_permissions=True)
	frappe.db.commit()
	return letter


class TestGenericEndpoints(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.manager = make_user("generic-fm@example.com", ["Fabric Manager"])
		cls.system = make_user("generic-sm@example.com", ["System Manager"])
		cls.approver = make_user("generic-approver@example.com", ["Blogger"])
		cls.fm_token = api_token(cls.manager)
		cls.sm_token = api_token(cls.system)
		cls.approver_token = api_token(cls.approver)

	def setUp(self):
		frappe.set_user("Administrator")

	def approval_request(self, requested_by: str) -> str:
		request_id = f"generic-{frappe.generate_hash(length=8)}"
		doc = frappe.get_doc(
			{
				"doctype": "Approval Request",
				"request_id": request_id,
				"status": "Pending",
				"risk": "high",
				"due_by": add_days(now_datetime(), 1),
				"agent": "agent-x",
				"task": "t",
				"requested_by": requested_by,
				"action_summary": "drop the table",
				"payload": "{}",
				"correlation_id": request_id,
				"approvers": [{"approver_type": "User", "approver": self.approver}],
			}
		)
		doc.flags.fabric_approval_path = True  # as the agent.approval.requested handler does
		doc.insert(ignore_permissions=True)
		frappe.db.commit()
		return doc.name

	def responses(self, name: str) -> list:
		return frappe.get_all(
			"Event Log", filters={"event_type": "approval.response", "entity_id": name}, pluck="name"
		)

	# Approval Request -------------------------------------------------------------------------

	def test_requester_cannot_approve_own_request_with_put(self):
		name = self.approval_request(requested_by=self.manager)
		response = request(
			"put",
			f"/api/resource/Approval Request/{name}",
			json={"status": "Approved", "decided_by": self.approver},
			**auth(self.fm_token),
		)
		self.assertEqual(response.status_code, 403, response.text)
		self.assertEqual(frappe.db.get_value("Approval Request", name, "status"), "Pending")

	def test_set_value_cannot_decide_or_reopen(self):
		name = self.approval_request(requested_by="agent@example.com")
		response = request(
			"post",
			"/api/method/frappe.client.set_value",
			json={"doctype": "Approval Request", "name": name, "fieldname": "status", "value": "Approved"},
			**auth(self.sm_token),
		)
		self.assertEqual(response.status_code, 403, response.text)
		self.assertEqual(frappe.db.get_value("Approval Request", name, "status"), "Pending")
		self.assertEqual(self.responses(name), [])

	def test_approval_request_cannot_be_posted_already_approved(self):
		request_id = f"generic-forged-{frappe.generate_hash(length=8)}"
		response = request(
			"post",
			"/api/resource/Approval Request",
			json={
				"request_id": request_id,
				"status": "Approved",
				"risk": "low",
				"due_by": "2099-01-01 00:00:00",
				"payload": "{}",
				"action_summary": "x",
			},
			**auth(self.fm_token),
		)
		self.assertEqual(response.status_code, 403, response.text)
		self.assertFalse(frappe.db.exists("Approval Request", request_id))

	def test_approve_through_the_app_still_works(self):
		name = self.approval_request(requested_by="agent@example.com")
		response = request(
			"post",
			"/api/method/cauldron_fabric.api.approvals.approve",
			json={"name": name},
			**auth(self.approver_token),
		)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual(frappe.db.get_value("Approval Request", name, "status"), "Approved")
		self.assertEqual(len(self.responses(name)), 1)

	# Dead Letter ------------------------------------------------------------------------------

	def test_dead_letter_cannot_be_edited_to_discard_another_delivery(self):
		delivery = pending_delivery()
		letter = dead_letter()
		response = request(
			"put",
			f"/api/resource/Dead Letter/{letter.name}",
			json={
				"status": "Discarded",
				"reference": str(delivery.name),
				"envelope": json.dumps({"forged": 1}),
			},
			**auth(self.fm_token),
		)
		self.assertEqual(response.status_code, 403, response.text)
		self.assertEqual(frappe.db.get_value("Event Delivery", delivery.name, "status"), "Pending")
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Dead")

	def test_dead_letter_discard_sent_with_a_forged_form_discards_only_its_own_delivery(self):
		# The form's buttons send the document with the call (run_doc_method's docs): the
		# client's copy, whose reference would point the discard at another delivery.
		delivery = pending_delivery()
		letter = dead_letter()
		forged = {**letter.as_dict(), "reference": str(delivery.name)}
		response = request(
			"post",
			"/api/method/run_doc_method",
			json={"docs": frappe.as_json(forged), "method": "discard"},
			**auth(self.fm_token),
		)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual(frappe.db.get_value("Event Delivery", delivery.name, "status"), "Pending")
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "reference"), None)
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Discarded")

	def test_dead_letter_discard_still_works(self):
		letter = dead_letter()
		response = request(
			"post",
			"/api/method/run_doc_method",
			json={"dt": "Dead Letter", "dn": letter.name, "method": "discard"},
			**auth(self.fm_token),
		)
		self.assertEqual(response.status_code, 200, response.text)
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "resolved_by"), self.manager)

	def test_a_discard_note_with_markup_is_kept_as_text_desk_cannot_run(self):
		# The note is written with db_set, past Frappe's sanitizing, into a field the letter's form
		# renders as HTML: a Fabric Manager's markup would run in a System Manager's browser.
		letters = [dead_letter(), dead_letter()]
		note = 'stale <img src=x onerror="alert(1)">'
		response = request(
			"post",
			"/api/method/run_doc_method",
			json={"dt": "Dead Letter", "dn": letters[0].name, "method": "discard", "args": {"note": note}},
			**auth(self.fm_token),
		)
		self.assertEqual(response.status_code, 200, response.text)
		response = request(
			"post",
			"/api/method/cauldron_fabric.api.dead_letters.discard",
			json={"names": [letters[1].name], "note": note},
			**auth(self.fm_token),
		)
		self.assertEqual(response.status_code, 200, response.text)
		for letter in letters:
			kept = frappe.db.get_value("Dead Letter", letter.name, "resolution_note")
			self.assertIn("stale", kept)
			self.assertNotRegex(kept, "[<>]")

	def test_actions_that_change_state_refuse_get(self):
		# A GET carries no CSRF token: a link opened by a manager's browser (its session cookie
		# goes along on a top-level navigation) must not retry, discard or reset anything.
		from cauldron_fabric.consume.requesting import site_breaker

		breaker, target = site_breaker(), f"generic-get-{frappe.generate_hash(length=6)}"
		self.addCleanup(breaker.store.reset, target)
		while breaker.state(target).state != "open":
			breaker.failed(target)
		letter = dead_letter()
		for doctype, name, method in (
			("Dead Letter", letter.name, "discard"),
			("Dead Letter", letter.name, "retry"),
			("Fabric Circuit", target, "reset"),
		):
			with self.subTest(method=method):
				query = {"dt": doctype, "dn": name, "method": method}
				response = request(
					"get", "/api/method/run_doc_method", query_string=query, **auth(self.fm_token)
				)
				self.assertEqual(response.status_code, 403, response.text)
		self.assertEqual(frappe.db.get_value("Dead Letter", letter.name, "status"), "Dead")
		self.assertEqual(breaker.state(target).state, "open")

	# Schema registry --------------------------------------------------------------------------

	def test_subject_version_counter_cannot_be_reset(self):
		subject = frappe.get_all("Event Subject", filters={"last_assigned_version": (">", 0)}, pluck="name")[
			0
		]
		before = frappe.db.get_value("Event Subject", subject, "last_assigned_version")
		response = request(
			"put",
			f"/api/resource/Event Subject/{subject}",
			json={"last_assigned_version": 0},
			**auth(self.fm_token),
		)
		self.assertEqual(response.status_code, 403, response.text)
		self.assertEqual(frappe.db.get_value("Event Subject", subject, "last_assigned_version"), before)

	def test_version_registration_record_is_immutable(self):
		name = frappe.get_all("Event Schema", pluck="name", limit=1)[0]
		before = frappe.db.get_value("Event Schema", name, "compatibility_mode")
		response = request(
			"post",
			"/api/method/frappe.client.set_value",
			json={
				"doctype": "Event Schema",
				"name": name,
				"fieldname": "compatibility_mode",
				"value": f"{before}!",
			},
			**auth(self.fm_token),
		)
		self.assertGreaterEqual(response.status_code, 400, response.text)
		self.assertEqual(frappe.db.get_value("Event Schema", name, "compatibility_mode"), before)
