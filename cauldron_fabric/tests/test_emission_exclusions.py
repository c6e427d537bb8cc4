"""What never becomes an event or part of one: noise, child tables, Desk's own fields, credentials."""

from __future__ import annotations

import json

import frappe

from cauldron_fabric.emit.changes import value_forms
from cauldron_fabric.tests.utils import (
	ORDER_ITEM,
	EmissionCase,
	ensure_custom_doctype,
	events_after,
	fabric_settings,
	new_order,
	types_of,
)


class TestWhatIsEmitted(EmissionCase):
	"""Noise DocTypes, the fabric's own DocTypes and secrets stay out of the Event Log."""

	def test_noise_and_child_tables_are_not_emitted(self):
		frappe.get_doc({"doctype": "Error Log", "error": "noise"}).insert(ignore_permissions=True)
		new_order("with children")
		self.assertNotIn("Error Log", {e["data"]["entity"] for e in events_after(self.start)})
		self.assertNotIn(ORDER_ITEM, {e["data"]["entity"] for e in events_after(self.start)})

	def test_desks_tags_likes_and_assignments_stay_out_of_payloads(self):
		from frappe.desk.doctype.tag.tag import add_tag
		from frappe.desk.form.assign_to import add as assign
		from frappe.desk.like import toggle_like

		todo = frappe.get_doc({"doctype": "ToDo", "description": "tagged"}).insert()
		add_tag("vip", "ToDo", todo.name)
		toggle_like("ToDo", todo.name, "Yes")
		assign({"doctype": "ToDo", "name": todo.name, "assign_to": ["Administrator"]})
		todo.reload()
		todo.description = "tagged and saved"
		todo.save()
		(update,) = [e for e in events_after(self.start, "ToDo", todo.name) if e["type"] == "todo.updated"]
		doc = update["data"]["payload"]["doc"]
		self.assertFalse({"_user_tags", "_liked_by", "_assign", "_comments", "_seen"} & set(doc), doc)
		self.assertEqual(list(update["data"]["payload"]["changes"]), ["description"])

	def test_credentials_frappe_keeps_in_plain_fields_never_travel(self):
		# OAuth client secrets are plain Data; a bearer token's name is the token itself.
		client = frappe.get_doc(
			{
				"doctype": "OAuth Client",
				"app_name": "fabric-probe",
				"client_secret": "s3cr3t-client",
				"default_redirect_uri": "https://example.com/cb",
				"redirect_uris": "https://example.com/cb",
			}
		).insert()
		client.client_secret = "s3cr3t-rotated"
		client.app_name = "fabric-probe 2"
		client.save()
		token = frappe.get_doc(
			{
				"doctype": "OAuth Bearer Token",
				"client": client.name,
				"user": "Administrator",
				"access_token": f"s3cr3t-access-{frappe.generate_hash(length=8)}",
				"refresh_token": "s3cr3t-refresh",
				"scopes": "all",
				"expires_in": 3600,
			}
		).insert()
		events = events_after(self.start)
		self.assertEqual(
			types_of(events), ["oauth_client.created", "oauth_client.updated"], "the token was emitted"
		)
		self.assertNotIn("s3cr3t", json.dumps(events))
		self.assertEqual(events[0]["data"]["payload"]["doc"]["client_secret"], "*****")
		self.assertEqual(
			events[1]["data"]["payload"]["changes"],
			{"app_name": {"old": "fabric-probe", "new": "fabric-probe 2"}},
		)
		self.assertTrue(frappe.db.exists("OAuth Bearer Token", token.name))
		frappe.db.rollback()

	def test_credentials_in_fields_named_for_their_kind_never_travel(self):
		# Google indexing keeps its OAuth refresh token in a plain Data field of Website Settings,
		# set without a save: every later save of the settings carried it.
		self.addCleanup(frappe.db.rollback)
		frappe.db.set_single_value(
			"Website Settings",
			{"indexing_authorization_code": "s3cr3t-code", "indexing_refresh_token": "s3cr3t-refresh"},
		)
		settings = frappe.get_single("Website Settings")
		settings.title_prefix = f"Fabric {frappe.generate_hash(length=6)}"
		settings.save()
		events = events_after(self.start, "Website Settings")
		# The write itself is an event too (via set_value): masked like the save's.
		self.assertEqual(types_of(events), ["system.change", "system.change"])
		self.assertNotIn("s3cr3t", json.dumps(events))
		written, saved = (event["data"]["payload"] for event in events)
		self.assertEqual(written["via"], "set_value")
		self.assertEqual(written["changes"]["indexing_refresh_token"]["new"], "*****")
		self.assertEqual(saved["doc"]["indexing_refresh_token"], "*****")
		# A flag named like a credential holds none: it travels as its 0 or 1.
		self.assertNotIn("awaiting_password", value_forms(frappe.get_meta("Email Account")))

	def test_the_fabrics_own_doctypes_are_not_emitted(self):
		with fabric_settings(retention_days=31):
			pass
		self.assertEqual(events_after(self.start, "Fabric Settings"), [])

	def test_a_custom_doctype_an_admin_puts_in_the_fabrics_module_is_emitted(self):
		name = "Fabric Module Custom Probe"
		fields = [{"fieldname": "title", "fieldtype": "Data", "label": "Title"}]
		ensure_custom_doctype(name, fields, module="Cauldron Fabric", autoname="hash")
		probe = frappe.get_doc({"doctype": name, "title": "mine"}).insert()
		self.assertEqual([e["data"]["entityId"] for e in events_after(self.start, name)], [probe.name])
