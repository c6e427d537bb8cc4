"""Document work on a real site becomes events in the Event Log, in the same transaction."""

from __future__ import annotations

import datetime as dt
import json
import threading

import frappe
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.consume.runner import SETTINGS_RECHECK_SECONDS, SettingsWatch
from cauldron_fabric.emit.changes import value_forms
from cauldron_fabric.emit.context import caused_by
from cauldron_fabric.emit.policy import current_policy
from cauldron_fabric.emit.scheduled import emit_heartbeat, purge_expired_events
from cauldron_fabric.tests.test_registry_support import refuse_the_next_commit
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	SQL_LOOKALIKE_TEXT,
	EmissionCase,
	ensure_custom_doctype,
	events_after,
	fabric_settings,
	last_seq,
	new_order,
	types_of,
)


def write_todo(envelope, payload) -> None:
	"""An in-app handler that writes a ToDo named after the event."""
	frappe.get_doc({"doctype": "ToDo", "description": f"handled {envelope.id}"}).insert()


def set_single_raw(field: str, value) -> None:
	"""Writes a Fabric Settings value as another process would: in SQL, caches left alone."""
	frappe.db.sql("DELETE FROM `tabSingles` WHERE doctype = 'Fabric Settings' AND field = %s", (field,))
	frappe.db.sql(
		"INSERT INTO `tabSingles` (doctype, field, value) VALUES ('Fabric Settings', %s, %s)", (field, value)
	)
	frappe.db.commit()


def policy_in_a_new_request():
	"""Returns the emit policy a new request (another web worker) builds, in a thread of its own."""
	site, found = frappe.local.site, {}

	def request() -> None:
		frappe.init(site=site)
		frappe.connect()
		try:
			found["policy"] = current_policy()
		finally:
			frappe.destroy()

	thread = threading.Thread(target=request)
	thread.start()
	thread.join()
	return found["policy"]


NUMBERED_ORDER = "Fabric Numbered Order"
TEMPORAL_PROBE = "Fabric Temporal Probe"
TEMPORAL_FIELDS = [
	{"fieldname": "on_day", "fieldtype": "Date", "label": "On day"},
	{"fieldname": "at", "fieldtype": "Datetime", "label": "At"},
	{"fieldname": "when", "fieldtype": "Time", "label": "When"},
]
LINK_PROBE = "Fabric Link Probe"
LINK_FIELDS = [
	{"fieldname": "order", "fieldtype": "Link", "label": "Order", "options": NUMBERED_ORDER},
	{"fieldname": "title", "fieldtype": "Data", "label": "Title"},
]
VIRTUAL_PROBE = "Fabric Virtual Probe"
VIRTUAL_PROBE_ROW = "Fabric Virtual Probe Row"
# A virtual field computed from the title, in the document and in its rows.
VIRTUAL_FIELDS = [
	{"fieldname": "title", "fieldtype": "Data", "label": "Title"},
	{
		"fieldname": "shout",
		"fieldtype": "Data",
		"label": "Shout",
		"is_virtual": 1,
		"options": "doc.title + '!'",
	},
]


def ensure_numbered_orders() -> None:
	"""Creates a submittable DocType named by autoincrement, with a Datetime transaction date."""
	ensure_custom_doctype(
		NUMBERED_ORDER,
		[{"fieldname": "transaction_date", "fieldtype": "Datetime", "label": "Transaction date"}],
		is_submittable=1,
		autoname="autoincrement",
	)


class TestDocumentEvents(EmissionCase):
	def test_rolled_back_transaction_records_nothing(self):
		frappe.db.commit()
		new_order("doomed")
		self.assertEqual(len(events_after(self.start, ORDER)), 1)
		frappe.db.rollback()
		self.assertEqual(events_after(self.start), [])

	def test_savepoint_rollback_drops_only_the_events_after_it(self):
		kept = new_order("kept")
		frappe.db.savepoint("fabric_test")
		new_order("dropped")
		frappe.db.rollback(save_point="fabric_test")
		self.assertEqual([e["data"]["entityId"] for e in events_after(self.start, ORDER)], [kept.name])

	def test_lifecycle_yields_the_right_events_in_order(self):
		order = new_order("lifecycle")
		order.title = "lifecycle v2"
		order.save()
		order.submit()
		order.note = "after submit"
		order.save()
		order.cancel()
		new_name = frappe.rename_doc(ORDER, order.name, order.name + "-renamed")
		frappe.delete_doc(ORDER, new_name)
		events = events_after(self.start, ORDER)
		self.assertEqual(
			types_of(events),
			[
				"fabric_test_order.created",
				"fabric_test_order.updated",
				"fabric_test_order.submitted",
				"business.transaction",
				"fabric_test_order.updated_after_submit",
				"fabric_test_order.cancelled",
				"business.transaction",
				"fabric_test_order.renamed",
				"fabric_test_order.deleted",
			],
		)
		created, updated, submitted, business, after_submit, *_rest, renamed, deleted = events
		self.assertEqual(created["data"]["action"], "created")
		self.assertEqual(
			[row["item"] for row in created["data"]["payload"]["doc"]["items"]], ["cauldron", "ladle"]
		)
		self.assertEqual(
			updated["data"]["payload"]["changes"], {"title": {"old": "lifecycle", "new": "lifecycle v2"}}
		)
		self.assertEqual(submitted["data"]["payload"]["doc"]["docstatus"], 1)
		self.assertEqual(business["data"]["action"], "submitted")
		self.assertEqual(business["data"]["payload"]["grand_total"], 120.5)
		self.assertEqual(business["data"]["payload"]["company"], "Cauldron Ltd")
		self.assertEqual(
			after_submit["data"]["payload"]["changes"]["note"], {"old": None, "new": "after submit"}
		)
		self.assertEqual(renamed["data"]["entityId"], new_name)
		self.assertEqual(renamed["data"]["payload"]["oldName"], order.name)
		self.assertEqual(deleted["data"]["entityId"], new_name)
		self.assertEqual({e["data"]["entity"] for e in events}, {ORDER})

	def test_document_text_reaches_the_outbox_unaltered(self):
		# Frappe's frappe.db.sql turns "ifnull(" into "coalesce(" anywhere in a query, and the
		# outbox INSERT carries the envelope as a literal: the text must survive both.
		order = new_order(SQL_LOOKALIKE_TEXT)
		order.note = SQL_LOOKALIKE_TEXT
		order.save()
		stored = frappe.db.get_value(ORDER, order.name, "title")
		self.assertIn("IFNULL(", stored)
		created, updated = events_after(self.start, ORDER)
		self.assertEqual(created["data"]["payload"]["doc"]["title"], stored)
		self.assertEqual(updated["data"]["payload"]["changes"]["note"]["new"], SQL_LOOKALIKE_TEXT)

	def test_event_text_reaches_the_outbox_unaltered_without_backslash_escapes(self):
		# Under NO_BACKSLASH_ESCAPES a backslash is an ordinary character in a literal and \' ends
		# it: the outbox INSERT must write its literals for the mode of the connection.
		from cauldron_fabric.emit.recorder import new_envelope, record

		mode = frappe.db.sql("SELECT @@SESSION.sql_mode")[0][0]
		self.addCleanup(frappe.db.sql, "SET SESSION sql_mode = %s", (mode,))
		frappe.db.sql("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
		envelope = new_envelope("probe.noted", "Probe", "T-'\\", "noted", {"note": SQL_LOOKALIKE_TEXT})
		record([envelope])
		stored = frappe.db.get_value("Event Log", {"event_id": envelope.id}, ["entity_id", "envelope"])
		self.assertEqual(stored[0], "T-'\\")
		self.assertEqual(json.loads(stored[1])["data"]["payload"]["note"], SQL_LOOKALIKE_TEXT)

	def test_dates_and_times_travel_as_stored_whatever_form_they_were_given_in(self):
		# A data import puts datetimes in Date fields; REST callers send "10:30" for a Time.
		# Under the default "Reject" policy such a save failed its schema check.
		ensure_custom_doctype(TEMPORAL_PROBE, TEMPORAL_FIELDS, autoname="hash")
		values = {"on_day": dt.datetime(2024, 1, 5), "at": "2024-01-05", "when": "10:30"}
		probe = frappe.get_doc({"doctype": TEMPORAL_PROBE, **values}).insert()
		stored = {"on_day": "2024-01-05", "at": "2024-01-05 00:00:00", "when": "10:30:00"}
		self.assertEqual(
			{
				k: str(v)
				for k, v in frappe.db.get_value(
					TEMPORAL_PROBE, probe.name, list(stored), as_dict=True
				).items()
			},
			stored,
		)
		probe = frappe.get_doc(TEMPORAL_PROBE, probe.name)
		probe.when = "10:30:00.000000"  # the same time written another way: no change
		probe.save()
		probe.on_day = "2024-02-01 00:00:00"
		probe.save()
		created, updated = events_after(self.start, TEMPORAL_PROBE)
		self.assertEqual({k: created["data"]["payload"]["doc"][k] for k in stored}, stored)
		self.assertEqual(
			updated["data"]["payload"]["changes"], {"on_day": {"old": "2024-01-05", "new": "2024-02-01"}}
		)
		statuses = frappe.db.sql(
			"SELECT DISTINCT status FROM `tabEvent Log` WHERE entity = %s AND name > %s",
			(TEMPORAL_PROBE, self.start),
		)
		self.assertNotIn(("Invalid",), statuses)

	def test_a_numbered_transaction_dated_to_the_second_is_a_business_transaction(self):
		# Autoincrement names are integers; ERPNext's Asset Movement has a Datetime transaction_date.
		ensure_numbered_orders()
		order = frappe.get_doc({"doctype": NUMBERED_ORDER, "transaction_date": "2026-03-02 10:15:00"})
		order.insert().submit()
		business = [
			e for e in events_after(self.start, NUMBERED_ORDER) if e["type"] == "business.transaction"
		]
		self.assertEqual(len(business), 1)
		self.assertEqual(business[0]["data"]["payload"]["name"], str(order.name))
		self.assertEqual(business[0]["data"]["payload"]["transaction_date"], "2026-03-02")

	def test_numbers_in_text_fields_travel_as_the_text_stored(self):
		# A Link to an autoincrement DocType holds the integer name it was given; Frappe stores
		# it, like a number typed into a Data field, as text.
		ensure_numbered_orders()
		ensure_custom_doctype(LINK_PROBE, LINK_FIELDS, autoname="hash")
		target = frappe.get_doc({"doctype": NUMBERED_ORDER}).insert()
		probe = frappe.get_doc({"doctype": LINK_PROBE, "order": target.name, "title": 2026}).insert()
		probe = frappe.get_doc(LINK_PROBE, probe.name)
		probe.save()  # nothing changed
		events = events_after(self.start, LINK_PROBE)
		self.assertEqual([e["data"]["action"] for e in events], ["created"])
		doc = events[0]["data"]["payload"]["doc"]
		self.assertEqual((doc["order"], doc["title"]), (str(target.name), "2026"))

	def test_child_table_changes_show_old_and_new_rows(self):
		order = new_order("rows")
		order.items[1].qty = 7
		order.save()
		changes = events_after(self.start, ORDER)[-1]["data"]["payload"]["changes"]
		self.assertEqual([r["qty"] for r in changes["items"]["old"]], [1, 3])
		self.assertEqual([r["qty"] for r in changes["items"]["new"]], [1, 7])

	def test_a_row_changed_on_its_own_is_an_update_of_its_parent(self):
		# Frappe runs a row's hooks only when code changes the row itself, never in the
		# parent's save: ERPNext db_sets billed amounts row by row this way.
		order = new_order("rows alone")
		frappe.db.commit()
		first, second = order.items
		second.db_set("qty", 7)
		frappe.db.commit()
		row = frappe.get_doc(ORDER_ITEM, first.name)
		row.item = "cauldron, large"
		row.save()
		frappe.db.commit()
		frappe.delete_doc(ORDER_ITEM, second.name)
		frappe.db.commit()
		added = {"doctype": ORDER_ITEM, "parent": order.name, "parenttype": ORDER, "parentfield": "items"}
		frappe.get_doc({**added, "item": "spoon", "qty": 2, "idx": 2}).insert()
		frappe.db.commit()
		_created, db_set, saved, deleted, inserted = events_after(self.start, ORDER)
		self.assertEqual(types_of([db_set, saved, deleted, inserted]), ["fabric_test_order.updated"] * 4)
		self.assertEqual({e["data"]["entityId"] for e in (db_set, saved, deleted, inserted)}, {order.name})

		def items(event, side, field):
			return [r[field] for r in event["data"]["payload"]["changes"]["items"][side]]

		self.assertEqual(db_set["data"]["payload"]["via"], "db_set")
		self.assertEqual([items(db_set, "old", "qty"), items(db_set, "new", "qty")], [[1, 3], [1, 7]])
		self.assertNotIn("via", saved["data"]["payload"])
		self.assertEqual(items(saved, "new", "item"), ["cauldron, large", "ladle"])
		self.assertEqual(items(deleted, "old", "item"), ["cauldron, large", "ladle"])
		self.assertEqual(items(deleted, "new", "item"), ["cauldron, large"])
		self.assertEqual(items(inserted, "new", "item"), ["cauldron, large", "spoon"])

	def test_rows_changed_one_by_one_in_a_transaction_are_one_update_at_commit(self):
		order = new_order("rows in one go")
		frappe.db.commit()
		for row, qty in zip(order.items, (5, 6), strict=True):
			row.db_set("qty", qty)
		self.assertEqual(len(events_after(self.start, ORDER)), 1, "recorded before the commit")
		frappe.db.commit()
		_created, update = events_after(self.start, ORDER)
		changed = update["data"]["payload"]["changes"]["items"]
		self.assertEqual([[r["qty"] for r in changed[side]] for side in ("old", "new")], [[1, 3], [5, 6]])
		self.assertEqual(update["data"]["payload"]["via"], "db_set")
		second = new_order("rolled back rows")
		frappe.db.commit()
		second.items[0].db_set("qty", 9)
		frappe.db.rollback()
		frappe.db.commit()
		self.assertEqual(types_of(events_after(self.start, ORDER))[2:], ["fabric_test_order.created"])

	def test_rows_changed_alone_after_a_refused_commit_are_still_recorded(self):
		# Frappe drops the after-rollback callbacks before it runs the before-commit ones, so a
		# commit that one of them refuses is rolled back without the fabric being told.
		def refuse() -> None:
			raise frappe.ValidationError("refused by a before_commit callback")

		order = new_order("rows after a refused commit")
		frappe.db.commit()
		frappe.db.before_commit.add(refuse)
		order.items[0].db_set("qty", 5)
		with self.assertRaises(frappe.ValidationError):
			frappe.db.commit()
		frappe.db.rollback()
		order.items[1].db_set("qty", 9)
		frappe.db.commit()
		_created, update = events_after(self.start, ORDER)
		changed = update["data"]["payload"]["changes"]["items"]
		self.assertEqual([[r["qty"] for r in changed[side]] for side in ("old", "new")], [[1, 3], [1, 9]])

	def test_db_set_is_emitted_with_its_change(self):
		order = new_order("db_set")
		order.db_set("note", "set directly")
		event = events_after(self.start, ORDER)[-1]
		self.assertEqual(event["type"], "fabric_test_order.updated")
		self.assertEqual(event["data"]["payload"]["via"], "db_set")
		self.assertEqual(event["data"]["payload"]["changes"], {"note": {"old": None, "new": "set directly"}})

	def test_a_save_that_changes_nothing_is_not_an_event(self):
		order = new_order("same")
		order.save()
		self.assertEqual(types_of(events_after(self.start, ORDER)), ["fabric_test_order.created"])

	def test_virtual_fields_change_only_when_their_value_does(self):
		ensure_custom_doctype(VIRTUAL_PROBE_ROW, VIRTUAL_FIELDS, istable=1)
		rows = {"fieldname": "rows", "fieldtype": "Table", "label": "Rows", "options": VIRTUAL_PROBE_ROW}
		ensure_custom_doctype(VIRTUAL_PROBE, [*VIRTUAL_FIELDS, rows], autoname="hash")
		probe = frappe.get_doc({"doctype": VIRTUAL_PROBE, "title": "a", "rows": [{"title": "r"}]}).insert()
		probe = frappe.get_doc(VIRTUAL_PROBE, probe.name)
		probe.save()  # nothing changed, the computed values included
		probe.title = "b"
		probe.save()
		created, updated = events_after(self.start, VIRTUAL_PROBE)
		self.assertEqual((created["data"]["action"], updated["data"]["action"]), ("created", "updated"))
		self.assertEqual(created["data"]["payload"]["doc"]["shout"], "a!")
		self.assertEqual(
			updated["data"]["payload"]["changes"],
			{"title": {"old": "a", "new": "b"}, "shout": {"old": "a!", "new": "b!"}},
		)

	def test_changes_made_by_patches_are_emitted(self):
		frappe.flags.in_patch = True
		try:
			order = new_order("from a patch")
		finally:
			frappe.flags.in_patch = False
		self.assertEqual(events_after(self.start, ORDER)[0]["data"]["entityId"], order.name)

	def test_data_import_emits_one_event_per_imported_row(self):
		from frappe.core.doctype.data_import.data_import import start_import

		csv = frappe.get_doc(
			{
				"doctype": "File",
				"file_name": "fabric_import.csv",
				"is_private": 1,
				"content": "Title,Grand Total\nimported one,10\nimported two,20\n",
			}
		).insert()
		data_import = frappe.get_doc(
			{
				"doctype": "Data Import",
				"reference_doctype": ORDER,
				"import_type": "Insert New Records",
				"import_file": csv.file_url,
			}
		).insert()
		start_import(data_import.name)
		events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), ["fabric_test_order.created"] * 2)
		self.assertEqual(
			sorted(e["data"]["payload"]["doc"]["title"] for e in events), ["imported one", "imported two"]
		)

	def test_metadata_names_user_site_and_conversation(self):
		with caused_by("cause-event-id", "conversation-1"):
			order = new_order("caused")
		event = events_after(self.start, ORDER, order.name)[0]
		self.assertEqual(
			event["metadata"],
			{
				"correlationId": "conversation-1",
				"causationId": "cause-event-id",
				"userId": "Administrator",
				"tenantId": frappe.local.site,
			},
		)
		self.assertEqual(event["source"], f"frappe://{frappe.local.site}")
		self.assertEqual(event["specVersion"], "1.0")

	def test_a_consumed_conversation_id_too_long_to_keep_is_replaced(self):
		# Another module's event may carry any correlationId; the Event Log keeps 140 characters.
		with caused_by("cause-event-id", "c" * 300):
			order = new_order("long conversation")
		metadata = events_after(self.start, ORDER, order.name)[0]["metadata"]
		self.assertEqual(metadata["causationId"], "cause-event-id")
		self.assertTrue(0 < len(metadata["correlationId"]) <= 140, metadata["correlationId"])

	def test_a_consumed_conversation_id_with_markup_is_replaced(self):
		# A consumed event comes from any producer on the bus, not only through the publish API;
		# the Event Log's correlation_id column, written by SQL, is rendered by Desk as HTML.
		with caused_by("cause-event-id", "<img src=x onerror=alert(1)>"):
			order = new_order("marked-up conversation")
		metadata = events_after(self.start, ORDER, order.name)[0]["metadata"]
		self.assertEqual(metadata["causationId"], "cause-event-id")
		self.assertNotRegex(metadata["correlationId"], "[<>]")
		stored = frappe.db.get_all("Event Log", {"entity_id": order.name}, pluck="correlation_id")
		self.assertEqual(stored, [metadata["correlationId"]])

	def test_every_event_of_a_request_shares_one_correlation_id(self):
		frappe.local.fabric_correlation_id = None
		new_order("first")
		new_order("second")
		ids = {e["metadata"]["correlationId"] for e in events_after(self.start, ORDER)}
		self.assertEqual(len(ids), 1)
		self.assertNotIn(None, ids)


class TestWhatIsEmitted(EmissionCase):
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
		self.assertEqual(types_of(events), ["system.change"])
		self.assertNotIn("s3cr3t", json.dumps(events))
		self.assertEqual(events[0]["data"]["payload"]["doc"]["indexing_refresh_token"], "*****")
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

	def test_deny_list_in_settings_silences_a_doctype(self):
		with fabric_settings(denied_doctypes=[{"document_type": ORDER}]):
			new_order("denied")
			self.assertEqual(events_after(self.start, ORDER), [])
		frappe.db.delete(ORDER, {"title": "denied"})
		frappe.db.commit()

	def test_allow_list_in_settings_keeps_only_its_doctypes(self):
		with fabric_settings(allowed_doctypes=[{"document_type": "ToDo"}]):
			new_order("not allowed")
			todo = frappe.get_doc({"doctype": "ToDo", "description": "allowed"}).insert()
			self.assertEqual({e["data"]["entity"] for e in events_after(self.start)}, {"ToDo"})
			frappe.delete_doc("ToDo", todo.name)
		frappe.db.delete(ORDER, {"title": "not allowed"})
		frappe.db.commit()

	def test_a_rolled_back_settings_change_leaves_no_trace(self):
		frappe.db.commit()
		settings = frappe.get_single("Fabric Settings")
		settings.enabled = 0
		settings.save()
		frappe.db.rollback()
		todo = frappe.get_doc({"doctype": "ToDo", "description": "after a rolled-back change"}).insert()
		self.assertEqual(types_of(events_after(self.start, "ToDo", todo.name)), ["todo.created"])

	def test_a_settings_change_whose_commit_is_refused_leaves_no_trace_in_other_processes(self):
		frappe.db.commit()
		refuse_the_next_commit()
		settings = frappe.get_single("Fabric Settings")
		settings.enabled = 0
		settings.save()
		with self.assertRaises(frappe.ValidationError):
			frappe.db.commit()
		frappe.db.rollback()
		self.assertTrue(policy_in_a_new_request().enabled, "emission stays off in every other process")
		todo = frappe.get_doc({"doctype": "ToDo", "description": "after a refused change"}).insert()
		self.assertEqual(types_of(events_after(self.start, "ToDo", todo.name)), ["todo.created"])

	def test_a_long_running_consumer_follows_settings_changed_elsewhere(self):
		current_policy()
		frappe.db.commit()
		before = frappe.db.get_single_value("Fabric Settings", "event_source")
		# Another process saves the settings: this process's caches are not told.
		set_single_raw("event_source", "frappe://elsewhere")
		self.addCleanup(set_single_raw, "event_source", before)
		self.assertNotEqual(current_policy().source, "frappe://elsewhere")
		watch = SettingsWatch(None, None)
		watch._checked -= SETTINGS_RECHECK_SECONDS
		watch()
		self.assertEqual(current_policy().source, "frappe://elsewhere")

	def test_a_running_delivery_workers_handlers_follow_a_deny_list_saved_since(self):
		from concurrent.futures import ThreadPoolExecutor

		from cauldron_fabric.delivery.handlers import SiteHandler, close_handler_connections
		from cauldron_fabric.emit.recorder import new_envelope

		# One sending thread of a running `fabric deliver`: the engine keeps its threads.
		pool = ThreadPoolExecutor(1)
		self.addCleanup(close_handler_connections)
		self.addCleanup(pool.shutdown)
		handler = SiteHandler(
			frappe.local.site, frappe.local.sites_path, f"{__name__}.write_todo", "Administrator"
		)

		def handle() -> str:
			envelope = new_envelope("probe.handled", "Probe", "1", "created", {})
			pool.submit(handler, envelope, None).result()
			frappe.db.rollback()  # see what the handler committed
			return frappe.db.get_value("ToDo", {"description": f"handled {envelope.id}"})

		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.db.delete, "ToDo", {"description": ("like", "handled %")})
		before = handle()
		self.assertEqual(types_of(events_after(self.start, "ToDo", before)), ["todo.created"])
		with fabric_settings(denied_doctypes=[{"document_type": "ToDo"}]):
			after = handle()
			self.assertEqual(events_after(self.start, "ToDo", after), [])

	def test_disabled_fabric_records_nothing(self):
		with fabric_settings(enabled=0):
			new_order("while disabled")
			self.assertEqual(events_after(self.start), [])
		frappe.db.delete(ORDER, {"title": "while disabled"})
		frappe.db.commit()

	def test_business_events_are_emitted_without_lifecycle_events(self):
		with fabric_settings(emit_document_events=0, emit_business_events=1):
			order = new_order("business only")
			order.submit()
			order.cancel()
			events = events_after(self.start, ORDER)
		self.assertEqual(types_of(events), ["business.transaction"] * 2)
		self.assertEqual([e["data"]["action"] for e in events], ["submitted", "cancelled"])
		self.assertEqual(events[0]["data"]["payload"]["grand_total"], 120.5)
		frappe.db.delete(ORDER, {"name": order.name})
		frappe.db.commit()

	def test_configuration_changes_are_system_change_events(self):
		fieldname = "fabric_probe_" + frappe.generate_hash(length=6)
		field = frappe.get_doc(
			{
				"doctype": "Custom Field",
				"dt": "ToDo",
				"fieldname": fieldname,
				"label": fieldname,
				"fieldtype": "Data",
			}
		).insert()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "Custom Field", field.name)
		settings = frappe.get_single("Print Settings")
		settings.font_size = (settings.font_size or 0) + 1
		settings.save()
		# Who may open a report or page is a permission too.
		report = "Permitted Documents For User"
		frappe.db.delete("Custom Role", {"report": report})
		role = frappe.get_doc({"doctype": "Custom Role", "report": report, "roles": [{"role": "Blogger"}]})
		role.insert()
		self.addCleanup(frappe.delete_doc, "Custom Role", role.name)
		events = events_after(self.start)
		changes = [e for e in events if e["type"] == "system.change"]
		entities = {(e["data"]["entity"], e["data"]["action"]) for e in changes}
		self.assertIn(("Custom Field", "created"), entities)
		self.assertIn(("Print Settings", "updated"), entities)
		self.assertIn(("Custom Role", "created"), entities)
		self.assertNotIn("custom_role.created", types_of(events))
		custom = next(e for e in changes if e["data"]["entity"] == "Custom Field")
		self.assertEqual(custom["data"]["payload"]["name"], field.name)
		self.assertEqual(custom["data"]["payload"]["doctype"], "Custom Field")
		self.assertNotIn("custom_field.created", types_of(events))

	def test_deleting_a_doctype_is_a_system_change(self):
		name = "Fabric Doomed " + frappe.generate_hash(length=6)
		ensure_custom_doctype(name, [{"fieldname": "title", "fieldtype": "Data", "label": "Title"}])
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "DocType", name, ignore_missing=True, force=True)
		start = last_seq()
		frappe.delete_doc("DocType", name)
		frappe.db.commit()
		changes = [e for e in events_after(start) if e["type"] == "system.change"]
		deleted = [
			e for e in changes if e["data"]["entity"] == "DocType" and e["data"]["action"] == "deleted"
		]
		self.assertEqual(len(deleted), 1, [(e["data"]["entity"], e["data"]["action"]) for e in changes])
		payload = deleted[0]["data"]["payload"]
		self.assertEqual(
			(payload["doctype"], payload["name"], payload["action"]), ("DocType", name, "deleted")
		)
		self.assertEqual(deleted[0]["data"]["entityId"], name)
		self.assertEqual([f["fieldname"] for f in payload["doc"]["fields"]], ["title"])

		# A rolled-back deletion emits nothing.
		ensure_custom_doctype(name, [{"fieldname": "title", "fieldtype": "Data", "label": "Title"}])
		frappe.db.commit()
		start = last_seq()
		frappe.delete_doc("DocType", name)
		frappe.db.rollback()
		self.assertTrue(frappe.db.exists("DocType", name))
		self.assertEqual(
			[
				e
				for e in events_after(start)
				if e["data"]["entity"] == "DocType" and e["data"]["entityId"] == name
			],
			[],
		)

	def test_heartbeat_describes_the_site_and_outbox(self):
		emit_heartbeat()
		(event,) = [e for e in events_after(self.start) if e["type"] == "system.status"]
		payload = event["data"]["payload"]
		self.assertEqual(payload["site"], frappe.local.site)
		self.assertIn("pending", payload["outbox"])
		self.assertEqual(payload["fabricVersion"], __import__("cauldron_fabric").__version__)

	def test_without_a_broker_events_are_recorded_not_pending(self):
		with fabric_settings(bootstrap_servers="", rabbitmq_url=""):
			order = new_order("embedded")
			status = frappe.db.get_value("Event Log", {"entity_id": order.name}, "status")
		self.assertEqual(status, "Recorded")
		frappe.db.delete(ORDER, {"name": order.name})
		frappe.db.commit()


class TestRetention(FrappeTestCase):
	def test_old_published_and_recorded_events_go_pending_and_failed_stay(self):
		todo = frappe.get_doc({"doctype": "ToDo", "description": "retention"}).insert()
		start = last_seq()
		for status in ("Published", "Recorded", "Pending", "Failed"):
			todo.db_set("description", status)
		frappe.db.sql(
			"UPDATE `tabEvent Log` SET creation = NOW() - INTERVAL 40 DAY, status = JSON_VALUE(envelope, '$.data.payload.doc.description') WHERE name > %s",
			(start,),
		)
		frappe.db.commit()
		purge_expired_events()
		remaining = frappe.db.sql("SELECT status FROM `tabEvent Log` WHERE name > %s ORDER BY name", (start,))
		self.assertEqual([r[0] for r in remaining], ["Pending", "Failed"])
		frappe.db.delete("Event Log", {"name": (">", start)})
		frappe.delete_doc("ToDo", todo.name)
		frappe.db.commit()
