"""Whitelisted methods refuse a malformed, mistyped or missing parameter with a validation error naming it."""

from __future__ import annotations

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.api import events as events_api


class TestMalformedParameters(FrappeTestCase):
	"""Each bad parameter is a ValidationError that names it, never an HTTP 500."""

	def test_each_is_a_validation_error_naming_it(self):
		# Before, each of these was an unhandled ValueError or JSONDecodeError: HTTP 500.
		from cauldron_fabric.api import approvals, dead_letters
		from cauldron_fabric.api import requests as requests_api

		frappe.set_user("Administrator")
		cases = [
			(events_api.list_events, {"limit": "abc"}, "limit"),
			(events_api.list_events, {"after": "1 or 1=1"}, "after"),
			(events_api.requeue, {"event_ids": "[bad"}, "event_ids"),
			(approvals.list_requests, {"limit": "x"}, "limit"),
			(dead_letters.retry_matching, {"limit": "x"}, "limit"),
			(dead_letters.retry_matching, {"filters": "{bad"}, "filters"),
			(dead_letters.retry, {"names": '["a"'}, "names"),
			(requests_api.send_request, {"type": "probe.request", "data": "{bad"}, "data"),
			(requests_api.send_request, {"type": "probe.request", "timeout": "abc"}, "timeout"),
		]
		for method, params, name in cases:
			with self.subTest(method=method.__name__, params=params):
				with self.assertRaises(frappe.ValidationError) as refused:
					method(**params)
				self.assertIn(name, str(refused.exception))

	def test_a_value_of_the_wrong_kind_is_a_validation_error_naming_it(self):
		# A JSON body can carry a list or an object where a text is expected: before, each of
		# these failed deep down (str methods, SQL, Redis) with HTTP 500.
		from cauldron_fabric.api import consumers, dead_letters, schemas, subscriptions
		from cauldron_fabric.api import requests as requests_api

		frappe.set_user("Administrator")
		cases = [
			(events_api.list_events, {"event_type": ["todo.*"]}, "event_type"),
			(events_api.list_events, {"entity": {"a": 1}}, "entity"),
			(events_api.get_event, {"event_id": {"a": 1}}, "event_id"),
			(events_api.get_event, {"event_id": ["like", "%"]}, "event_id"),
			(requests_api.reset_circuit, {"target": ["x"]}, "target"),
			(consumers.get_lag, {"topics": ["a", "b"]}, "topics"),
			(schemas.list_subjects, {"subjectPrefix": ["x"]}, "subjectPrefix"),
			(schemas.register, {"subject": ["x"], "schema": {"type": "object"}}, "subject"),
			# A filter where a name belongs picked whichever subscription matched it first.
			(subscriptions.reveal_secret, {"subscription": {"name": ["like", "%"]}}, "subscription"),
			(subscriptions.get_delivery_stats, {"subscription": ["like", "%"]}, "subscription"),
			(subscriptions.send_test_event, {"subscription": {"name": ["like", "%"]}}, "subscription"),
			(dead_letters.discard, {"names": ["none-such"], "note": {"a": 1}}, "note"),
		]
		for method, params, name in cases:
			with self.subTest(method=method.__name__, params=params):
				with self.assertRaises(frappe.ValidationError) as refused:
					method(**params)
				self.assertIn(name, str(refused.exception))

	def test_dead_letter_filters_naming_no_field_or_of_no_kind_are_a_validation_error(self):
		# retry_matching takes a Dead Letter list filter: a misspelt field was a SQL error and a
		# number a TypeError, both HTTP 500; a text in the list went into the query as SQL of its
		# own, and a condition on another DocType joined its table (an oracle on any table).
		from cauldron_fabric.api import dead_letters

		frappe.set_user("Administrator")
		for filters, named in (
			([["subscripton", "=", "x"]], "subscripton"),
			({"evnt_type": "todo.created"}, "evnt_type"),
			(5, "filters"),
			('"text"', "filters"),
			(["1=1"], "filters"),
			([["status", "=", "Dead"], "(select count(*) from `tabSessions`) > 0"], "filters"),
			([["User", "name", "=", "Administrator"]], "User"),
			([[["status"], "=", "Dead"]], "status"),
			# Values of no kind a filter compares with went into Frappe's query as Python's
			# text of them (SQL error 1064), and a test with no value failed on its length.
			([["event_type", "=", {"a": 1}]], "[operator, value]"),
			({"event_type": {"a": 1}}, "[operator, value]"),
			({"event_type": ["like"]}, "[operator, value]"),
			({"event_type": [None]}, "[operator, value]"),
			({"event_type": ["drop", "x"]}, "[operator, value]"),
			([["event_type", "in", [{"a": 1}]]], "[operator, value]"),
			([["event_type", "like", None]], "[operator, value]"),
		):
			with self.subTest(filters=filters):
				with self.assertRaises(frappe.ValidationError) as refused:
					dead_letters.retry_matching(filters=filters)
				self.assertIn(named, str(refused.exception))
		desk_filter = [
			["Dead Letter", "subscription", "=", "none-such"],
			["Dead Letter", "_assign", "like", "%x%"],
		]
		self.assertEqual(dead_letters.retry_matching(filters=desk_filter), {"done": 0, "failed": []})
		# Each shape Desk's filters take is accepted. The letters of no subscription are matched,
		# so that no letter the site holds is retried.
		nowhere = f"none-such-{frappe.generate_hash(length=8)}"
		for tests in (
			{"event_type": "todo.created", "attempts": 3, "subscription": nowhere},
			{"event_type": ["like", "todo.%"], "attempts": [">=", 1], "subscription": nowhere},
			{"event_type": ["in", ["todo.created"]], "error_class": ["is", "set"], "subscription": nowhere},
			[
				["event_type", "not in", ["a.b"]],
				["creation", "between", ["2026-01-01", "2026-12-31"]],
				["subscription", "=", nowhere],
			],
		):
			with self.subTest(filters=tests):
				self.assertEqual(dead_letters.retry_matching(filters=tests), {"done": 0, "failed": []})

	def test_a_text_longer_than_what_is_kept_is_refused_naming_the_limit(self):
		# A discard note longer than its column failed the form's Discard with a database error
		# (HTTP 500) and answered a bulk Discard with that error for every letter; an approval
		# comment longer than its event's schema allows told the approver to have a schema
		# version registered.
		from cauldron_fabric.api import approvals, dead_letters
		from cauldron_fabric.approvals.decisions import COMMENT_LENGTH
		from cauldron_fabric.cauldron_fabric.doctype.dead_letter.dead_letter import NOTE_LENGTH
		from cauldron_fabric.tests.test_approval_support import (
			APPROVER,
			approval_requested,
			ensure_people,
			receive,
		)

		frappe.set_user("Administrator")
		long_note = "n" * (NOTE_LENGTH + 1)
		with self.assertRaisesRegex(
			frappe.ValidationError, f"{NOTE_LENGTH + 1} characters long.*at most {NOTE_LENGTH}"
		):
			dead_letters.discard(names=["none-such"], note=long_note)
		with self.assertRaisesRegex(frappe.ValidationError, f"at most {NOTE_LENGTH}"):
			frappe.new_doc("Dead Letter").discard(note=long_note)
		ensure_people()
		pending = receive(approval_requested())
		frappe.set_user(APPROVER)
		try:
			with self.assertRaisesRegex(frappe.ValidationError, f"at most {COMMENT_LENGTH}. Shorten it"):
				approvals.approve(name=pending, comment="c" * (COMMENT_LENGTH + 1))
			self.assertEqual(frappe.db.get_value("Approval Request", pending, "status"), "Pending")
			decided = approvals.approve(name=pending, comment="c" * COMMENT_LENGTH)
			self.assertEqual(frappe.db.get_value("Approval Request", pending, "status"), "Approved", decided)
		finally:
			frappe.set_user("Administrator")

	def test_the_overrides_of_frappes_endpoints_refuse_bad_arguments_by_name(self):
		# The app's overrides of Frappe endpoints (permission manager, user permissions, the
		# approval request's form and link checks) failed on these with TypeError,
		# JSONDecodeError, a bare Exception or a database error: HTTP 500.
		from cauldron_fabric.approvals import permissions as approval_permissions
		from cauldron_fabric.emit import permissions

		frappe.set_user("Administrator")
		cases = [
			(permissions.update, {}, "doctype is required"),
			(permissions.update, {"doctype": "ToDo", "role": "Blogger", "permlevel": 0}, "ptype is required"),
			(
				permissions.update,
				{"doctype": "ToDo", "role": "Blogger", "permlevel": 0, "ptype": "nosuch"},
				"ptype must be one of",
			),
			(
				permissions.remove,
				{"doctype": {"a": 1}, "role": "Blogger", "permlevel": 0},
				"doctype must be a text",
			),
			(
				permissions.remove,
				{"doctype": "ToDo", "role": "Blogger", "permlevel": "x"},
				"permlevel must be",
			),
			(permissions.reset, {"doctype": 5}, "doctype must be a text"),
			(permissions.add_user_permissions, {}, "data is required"),
			(permissions.add_user_permissions, {"data": "{bad"}, "data is not valid JSON"),
			(permissions.add_user_permissions, {"data": "[1]"}, "data must be a JSON object"),
			(permissions.clear_user_permissions, {"user": "Administrator"}, "for_doctype is required"),
			(approval_permissions.getdoc, {"doctype": "ToDo"}, "name is required"),
			(approval_permissions.get, {}, "doctype is required"),
			(approval_permissions.get, {"doctype": "ToDo", "filters": "{bad"}, "filters is not valid JSON"),
			(approval_permissions.get_docinfo, {"doctype": "ToDo"}, "name is required"),
			(approval_permissions.run_doc_method, {}, "method is required"),
			(approval_permissions.run_doc_method, {"method": "x", "docs": "{bad"}, "docs is not valid JSON"),
		]
		for method, params, message in cases:
			with self.subTest(method=f"{method.__module__}.{method.__name__}", params=params):
				with self.assertRaisesRegex(frappe.ValidationError, message):
					method(**params)
		# Valid calls go on to Frappe's methods as before.
		self.assertEqual(approval_permissions.get("User", "Administrator")["name"], "Administrator")
		self.assertEqual(
			approval_permissions.get("User", filters='{"name": "Administrator"}')["name"], "Administrator"
		)

	def test_a_missing_parameter_is_a_validation_error_naming_it(self):
		# Frappe calls whitelisted methods with the request's parameters: a required one left
		# out was a TypeError about positional arguments, HTTP 500.
		from cauldron_fabric.api import approvals, dead_letters, subscriptions
		from cauldron_fabric.api import requests as requests_api

		frappe.set_user("Administrator")
		cases = [
			(events_api.requeue, "event_ids"),
			(events_api.get_event, "event_id"),
			(approvals.approve, "name"),
			(approvals.reject, "name"),
			(approvals.get_request, "name"),
			(dead_letters.retry, "names"),
			(dead_letters.discard, "names"),
			(requests_api.send_request, "type"),
			(requests_api.reset_circuit, "target"),
			(subscriptions.get_delivery_stats, "subscription"),
			(subscriptions.reveal_secret, "subscription"),
			(subscriptions.send_test_event, "subscription"),
		]
		for method, name in cases:
			with self.subTest(method=f"{method.__module__}.{method.__name__}"):
				with self.assertRaisesRegex(frappe.ValidationError, f"{name} is required"):
					method()
