"""frappe.db.set_value and set_single_value writes are ``updated`` events with ``via: set_value``,
and a document's db_update() outside Frappe's save with ``via: db_update``.

Frappe runs no document hook for them; the app wraps the three methods (emit/set_values.py).
Outside a save such a write is its own event at once; one made by a document's own hooks
follows that save's event; one to a child row is its parent's update at commit. db_set, which
writes through set_value, stays one event of its own. Fabric Settings choose which writes count.
"""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager

import frappe

from cauldron_fabric.core.sql_kinds import statement_body
from cauldron_fabric.emit.policy import SET_VALUES_ALL, SET_VALUES_NONE, SET_VALUES_THAT_UPDATE_MODIFIED
from cauldron_fabric.emit.rows import record_row_changes
from cauldron_fabric.emit.set_values import watch_set_values
from cauldron_fabric.patches import set_value_writes_are_recorded_by_default
from cauldron_fabric.registry import subjects, versions
from cauldron_fabric.registry.doctypes import derived_schemas
from cauldron_fabric.tests.utils import (
	ORDER,
	ORDER_ITEM,
	EmissionCase,
	ensure_custom_doctype,
	events_after,
	fabric_settings,
	last_seq,
	listed_patches,
	new_order,
	order_hooks,
	payload,
	save_with_hooks,
	types_of,
)

CREATED = "fabric_test_order.created"
UPDATED = "fabric_test_order.updated"
SINGLE = "Fabric Set Value Single"
NUMBERED = "Fabric Set Value Numbered"
TABLELESS = "Fabric Set Value Tableless"

# What before_request and before_job do: a test run alone has no document hook to import it.
watch_set_values()


# set_values Frappe 15's scheduled jobs make on every run, sync or backup (besides a Document
# Naming Rule's counter and an Email Account's uidnext, tested with Frappe's own code above).
FRAPPES_SCHEDULED_WRITES = (
	("Auto Repeat", "next_schedule_date"),  # make_auto_repeat_entry, daily
	("Google Contacts", "next_sync_token"),  # sync, daily
	("Google Contacts", "last_sync_on"),
	("Google Drive", "last_backup_on"),  # daily_backup and weekly_backup
	("Email Account", "uidnext"),  # pull, every ten minutes
)


def stored_without_hooks(doctype: str) -> str:
	"""Writes a bare document of ``doctype`` (its row only, no hook or validation) and returns
	its name; a Single's name is its DocType."""
	if frappe.get_meta(doctype).issingle:
		return doctype
	doc = frappe.get_doc({"doctype": doctype, "name": f"fabric-bookkeeping-{frappe.generate_hash(length=8)}"})
	doc.db_insert()
	return doc.name


def value_for(doctype: str, field: str, number: int):
	"""Returns a value of ``field``'s type, different for each ``number``."""
	fieldtype = frappe.get_meta(doctype).get_field(field).fieldtype
	if fieldtype == "Int":
		return 1000 + number
	if fieldtype == "Date":
		return f"2031-01-{number:02d}"
	if fieldtype == "Datetime":
		return f"2031-01-01 10:00:{number:02d}"
	return f"token {number}"


def note_by_set_value(doc, method=None) -> None:
	"""A controller hook that writes the order's note with frappe.db.set_value, naming the hook."""
	frappe.db.set_value(doc.doctype, doc.name, "note", f"set_value in {method}")


def note_by_set_value_then_refuse(doc, method=None) -> None:
	"""A hook that writes the note with frappe.db.set_value and then makes the save fail."""
	note_by_set_value(doc, method)
	frappe.throw("refused after set_value")


def note_by_set_value_under_the_new_name(doc, method=None, old=None, new=None, merge=False) -> None:
	"""An after_rename hook that writes the note under the new name, as ERPNext's Item writes
	its item_code."""
	frappe.db.set_value(doc.doctype, new, "note", f"renamed from {old}")


def note_by_db_set_under_the_new_name(doc, method=None, old=None, new=None, merge=False) -> None:
	"""An after_rename hook that db_sets the note on the renamed document, as ERPNext's Customer
	db_sets its customer_name."""
	doc.db_set("note", f"db_set after renaming {old}")


def note_by_save_under_the_new_name(doc, method=None, old=None, new=None, merge=False) -> None:
	"""An after_rename hook that saves the renamed document with a new note."""
	doc.note = f"saved after renaming {old}"
	doc.save()


def note_by_set_value_then_commit(doc, method=None) -> None:
	"""A hook that writes the note with frappe.db.set_value and commits, as some jobs' hooks do."""
	note_by_set_value(doc, method)
	frappe.db.commit()


def refuse(doc, method=None) -> None:
	"""A hook that makes the save fail before it writes anything."""
	frappe.throw("refused")


def note_by_db_update(doc, method=None) -> None:
	"""A controller hook that sets the note on the saved object and writes it with db_update."""
	doc.note = f"db_update in {method}"
	doc.db_update()


def note_by_db_update_of_a_copy(doc, method=None) -> None:
	"""A controller hook that writes the note with db_update through a freshly loaded copy."""
	copy = frappe.get_doc(doc.doctype, doc.name)
	copy.note = f"db_update of a copy in {method}"
	copy.db_update()


def write_after_a_refused_save(title: str, write) -> list[dict]:
	"""Inserts an order titled ``title`` and commits; saves it with a validate that refuses,
	then, as a caller that caught the error, calls ``write(order)``, saves the order again as
	"saved again" and commits: returns the events from the refused save on."""
	order = new_order(title)
	frappe.db.commit()
	start = last_seq()
	with order_hooks(__name__, validate="refuse"):
		order.title = "never saved"
		try:
			order.save()
		except frappe.ValidationError:
			pass
		else:
			raise AssertionError("the validate hook let the save through")
	write(order)
	order.reload()
	order.title = "saved again"
	order.save()
	frappe.db.commit()
	return events_after(start, ORDER)


@contextmanager
def reads_of(table: str):
	"""Lists the SELECTs run on ``table`` inside (the real queries, as run; the fabric's after a
	``SET STATEMENT … FOR``)."""
	reads: list[str] = []
	sql = frappe.db.__class__.sql

	def counted(db, query, *args, **kwargs):
		if statement_body(str(query)).lstrip().upper().startswith("SELECT") and f"`tab{table}`" in str(query):
			reads.append(str(query))
		return sql(db, query, *args, **kwargs)

	frappe.db.__class__.sql = counted
	try:
		yield reads
	finally:
		frappe.db.__class__.sql = sql


def store_installed_apps(apps: list[str]) -> None:
	"""Stores the site's list of installed apps in this transaction, as bench uninstall-app does,
	without the document hooks of the apps it leaves out (set_global would run them)."""
	frappe.db.sql(
		"UPDATE `tabDefaultValue` SET `defvalue` = %s"
		" WHERE `parent` = '__global' AND `defkey` = 'installed_apps'",
		(json.dumps(apps),),
	)
	frappe.cache.hdel("defaults", "__global")
	frappe.local.request_cache.clear()  # frappe.get_installed_apps answers once per request
	frappe.local.fabric_policy = None


class TestSetValueOutsideSaves(EmissionCase):
	def test_a_write_is_an_update_of_the_stored_document(self):
		order = new_order("set_value alone")
		start = last_seq()
		frappe.db.set_value(ORDER, order.name, {"note": "written directly", "grand_total": 99})
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(event["data"]["entityId"], order.name)
		self.assertEqual(payload(event)["via"], "set_value")
		self.assertEqual(
			payload(event)["changes"],
			{"note": {"old": None, "new": "written directly"}, "grand_total": {"old": 120.5, "new": 99.0}},
		)
		self.assertEqual(payload(event)["doc"]["note"], "written directly")
		# The whole document as stored goes with it, rows included.
		self.assertEqual([row["item"] for row in payload(event)["doc"]["items"]], ["cauldron", "ladle"])

	def test_a_write_of_the_same_value_records_nothing(self):
		order = new_order("same value", note="kept")
		start = last_seq()
		frappe.db.set_value(ORDER, order.name, "note", "kept")
		self.assertEqual(events_after(start, ORDER), [])

	def test_a_write_to_a_name_or_doctype_that_does_not_exist_leaves_no_message(self):
		# Frappe's write to a missing name changes nothing and says nothing, and one to a missing
		# DocType raises the database's error: the reads before it must not leave a "not found"
		# message that the response shows the user as an error dialog.
		frappe.clear_messages()
		start = last_seq()
		frappe.db.set_value(ORDER, "fabric-no-such-order", "note", "nowhere")
		frappe.db.set_value(ORDER_ITEM, "fabric-no-such-row", "qty", 3)
		frappe.get_doc({"doctype": ORDER, "name": "fabric-no-such-order", "title": "t"}).db_update()
		with self.assertRaises(Exception) as raised:
			frappe.db.set_value("Fabric No Such DocType", "a", "note", "nowhere")
		self.assertTrue(frappe.db.is_table_missing(raised.exception))
		self.assertEqual(frappe.get_message_log(), [])
		self.assertEqual(events_after(start, ORDER), [])

	def test_a_write_to_a_doctype_whose_table_is_missing_raises_the_databases_error(self):
		# A patch may write to a DocType whose table a later sync creates, and catch the error
		# that says so (frappe.db.is_table_missing): the fabric's read before the write must
		# raise nothing else, and leave the write to raise its own error.
		ensure_custom_doctype(TABLELESS, [{"fieldname": "note", "fieldtype": "Data", "label": "Note"}])
		frappe.db.commit()
		frappe.db.sql_ddl(f"DROP TABLE IF EXISTS `tab{TABLELESS}`")
		frappe.cache.hdel("table_columns", f"tab{TABLELESS}")
		try:
			writes = {
				"set_value by name": lambda: frappe.db.set_value(TABLELESS, "a", "note", "x"),
				"set_value by filters": lambda: frappe.db.set_value(TABLELESS, {"note": "y"}, "note", "x"),
				"db_update": lambda: frappe.get_doc({"doctype": TABLELESS, "name": "a"}).db_update(),
			}
			for label, write in writes.items():
				with self.subTest(label):
					with self.assertRaises(Exception) as raised:
						write()
					self.assertTrue(frappe.db.is_table_missing(raised.exception), raised.exception)
		finally:
			frappe.db.updatedb(TABLELESS)

	def test_a_write_by_filters_is_one_event_per_document_it_matched(self):
		tag = frappe.generate_hash(length=8)
		first, second = new_order(tag), new_order(tag)
		new_order(f"{tag}-other")
		start = last_seq()
		frappe.db.set_value(ORDER, {"title": tag}, "note", "bulk note")
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [UPDATED, UPDATED])
		self.assertEqual({e["data"]["entityId"] for e in events}, {first.name, second.name})
		self.assertEqual({payload(e)["changes"]["note"]["new"] for e in events}, {"bulk note"})

	def test_a_write_reads_its_documents_once_after_it_all_at_once(self):
		# Before the write only the values it replaces are read, for all documents at once: a
		# patch writing thousands of documents by filters holds no thousands of documents in
		# memory, nor reads each twice. After it, the documents are read together: one query
		# per table (stored_documents), not one per document and table.
		tag = frappe.generate_hash(length=8)
		orders = [new_order(tag) for _ in range(3)]
		start = last_seq()
		with reads_of(ORDER_ITEM) as rows_read, reads_of(ORDER) as orders_read:
			frappe.db.set_value(ORDER, {"title": tag}, {"note": "bulk note", "grand_total": 7})
		self.assertEqual(len(rows_read), 1)
		self.assertEqual(len(orders_read), 2)
		events = events_after(start, ORDER)
		self.assertEqual({e["data"]["entityId"] for e in events}, {order.name for order in orders})
		for event in events:
			self.assertEqual(
				payload(event)["changes"],
				{"note": {"old": None, "new": "bulk note"}, "grand_total": {"old": 120.5, "new": 7.0}},
			)

	def test_a_write_by_a_list_of_names_or_by_the_value_it_changes(self):
		tag = frappe.generate_hash(length=8)
		first, second = new_order(tag), new_order(tag)
		start = last_seq()
		frappe.db.set_value(ORDER, [first.name, second.name], "note", "listed")
		# The filters name the field written: the documents they matched before the write count.
		frappe.db.set_value(ORDER, {"note": "listed", "title": tag}, "note", "moved on")
		events = events_after(start, ORDER)
		self.assertEqual(
			sorted((payload(e)["changes"]["note"]["new"], e["data"]["entityId"]) for e in events),
			sorted((note, name) for note in ("listed", "moved on") for name in (first.name, second.name)),
		)

	def test_an_autoincrement_name_given_as_a_number_or_a_string(self):
		ensure_custom_doctype(
			NUMBERED,
			[{"fieldname": "title", "fieldtype": "Data", "label": "Title"}],
			autoname="autoincrement",
		)
		doc = frappe.get_doc({"doctype": NUMBERED, "title": "first"}).insert()
		start = last_seq()
		frappe.db.set_value(NUMBERED, doc.name, "title", "by number")
		frappe.db.set_value(NUMBERED, str(doc.name), "title", "by string")
		events = events_after(start, NUMBERED)
		self.assertEqual([e["data"]["entityId"] for e in events], [str(doc.name)] * 2)
		self.assertEqual(
			[payload(e)["changes"]["title"] for e in events],
			[{"old": "first", "new": "by number"}, {"old": "by number", "new": "by string"}],
		)

	def test_db_set_stays_one_event_of_its_own(self):
		order = new_order("db_set")
		start = last_seq()
		order.db_set("note", "by db_set")
		(event,) = events_after(start, ORDER)
		self.assertEqual(payload(event)["via"], "db_set")
		self.assertEqual(payload(event)["changes"], {"note": {"old": None, "new": "by db_set"}})

	def test_a_rollback_takes_the_event_with_the_write(self):
		order = new_order("rolled back")
		frappe.db.commit()
		start = last_seq()
		frappe.db.savepoint("fabric_set_value")
		frappe.db.set_value(ORDER, order.name, "note", "undone by a savepoint")
		frappe.db.rollback(save_point="fabric_set_value")
		frappe.db.set_value(ORDER, order.name, "title", "kept")
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(payload(event)["changes"], {"title": {"old": "rolled back", "new": "kept"}})
		frappe.db.set_value(ORDER, order.name, "note", "undone by a rollback")
		frappe.db.rollback()
		self.assertEqual(len(events_after(start, ORDER)), 1)

	def test_a_write_to_a_denied_doctype_records_nothing(self):
		order = new_order("denied")
		with fabric_settings(denied_doctypes=[{"document_type": ORDER}]):
			start = last_seq()
			frappe.db.set_value(ORDER, order.name, "note", "not told")
			self.assertEqual(events_after(start, ORDER), [])


class TestWhichWritesCount(EmissionCase):
	def test_by_default_writes_that_keep_modified_are_bookkeeping(self):
		order = new_order("bookkeeping")
		start = last_seq()
		frappe.db.set_value(ORDER, order.name, "note", "kept modified", update_modified=False)
		# Positionally too: dt, dn, field, val, modified, modified_by, update_modified.
		frappe.db.set_value(ORDER, order.name, "title", "kept again", None, None, False)
		self.assertEqual(events_after(start, ORDER), [])
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), "kept modified")

	def test_a_site_the_app_left_records_nothing(self):
		# The wraps stay in a process after `bench uninstall-app` took the app and its tables from
		# a site (web workers and workers keep running): there the policy must not read Fabric
		# Settings, whose DocType is gone, or every set_value on the site would fail.
		order = new_order("after uninstall")
		apps = frappe.get_installed_apps()
		store_installed_apps([app for app in apps if app != "cauldron_fabric"])
		try:
			start = last_seq()
			frappe.db.set_value(ORDER, order.name, "note", "after uninstall")
			order.reload()
			order.title = "written by db_update"
			order.db_update()
			self.assertEqual(events_after(start, ORDER), [])
		finally:
			store_installed_apps(apps)
		self.assertIn("cauldron_fabric", frappe.get_installed_apps())

	def test_every_write_and_none(self):
		order = new_order("modes")
		for mode, expected in (
			(SET_VALUES_ALL, 2),
			(SET_VALUES_NONE, 0),
			(SET_VALUES_THAT_UPDATE_MODIFIED, 1),
		):
			with self.subTest(mode=mode), fabric_settings(capture_set_value=mode):
				start = last_seq()
				frappe.db.set_value(ORDER, order.name, "note", f"{mode} 1", update_modified=False)
				frappe.db.set_value(ORDER, order.name, "note", f"{mode} 2")
				self.assertEqual(len(events_after(start, ORDER)), expected)

	def test_by_default_frappes_own_counters_are_bookkeeping_too(self):
		# Frappe counts the names a Document Naming Rule gives with a set_value that updates
		# modified: by default that is no system.change for every document the rule names.
		rule = frappe.get_doc(
			{
				"doctype": "Document Naming Rule",
				"document_type": ORDER,
				"prefix": "FSV-.#####",
				"prefix_digits": 5,
				"priority": 99,
			}
		).insert()
		frappe.db.commit()
		try:
			for mode, expected in ((SET_VALUES_THAT_UPDATE_MODIFIED, 0), (SET_VALUES_ALL, 1)):
				with self.subTest(mode=mode), fabric_settings(capture_set_value=mode):
					start = last_seq()
					order = new_order("named by a rule")
					self.assertTrue(order.name.startswith("FSV-"))
					counted = events_after(start, "Document Naming Rule")
					self.assertEqual(len(counted), expected)
					self.assertEqual(types_of(events_after(start, ORDER)), [CREATED])
		finally:
			frappe.db.rollback()
			frappe.delete_doc("Document Naming Rule", rule.name, force=True)
			frappe.db.commit()

	def test_by_default_frappes_sync_marks_and_schedules_are_bookkeeping(self):
		# Frappe's scheduled jobs store these with set_values that update modified: by default
		# that is no event for every sync, backup or run; with Every write, one per write.
		for mode, expected in ((SET_VALUES_THAT_UPDATE_MODIFIED, 0), (SET_VALUES_ALL, 1)):
			with fabric_settings(capture_set_value=mode):
				for number, (doctype, field) in enumerate(FRAPPES_SCHEDULED_WRITES, start=1):
					with self.subTest(mode=mode, doctype=doctype, field=field):
						name = stored_without_hooks(doctype)
						start = last_seq()
						frappe.db.set_value(doctype, name, field, value_for(doctype, field, number))
						self.assertEqual(len(events_after(start, doctype)), expected)
				frappe.db.rollback()

	def test_the_patch_stores_the_default_on_settings_saved_before_the_field(self):
		self.assertIn("cauldron_fabric.patches.set_value_writes_are_recorded_by_default", listed_patches())
		frappe.db.sql(
			"DELETE FROM `tabSingles` WHERE doctype = 'Fabric Settings' AND field = 'capture_set_value'"
		)
		frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
		self.assertIsNone(frappe.get_single("Fabric Settings").capture_set_value)
		set_value_writes_are_recorded_by_default.execute()
		self.assertEqual(
			frappe.get_single("Fabric Settings").capture_set_value, SET_VALUES_THAT_UPDATE_MODIFIED
		)
		frappe.db.rollback()


class TestSetValueInsideSaves(EmissionCase):
	"""Each test commits, so a write held back by mistake would show up as an extra event."""

	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_a_write_in_on_update_follows_the_saves_event(self):
		_, (saved, written) = save_with_hooks(__name__, "on_update", on_update="note_by_set_value")
		self.assertEqual(types_of([saved, written]), [UPDATED, UPDATED])
		self.assertEqual(payload(saved)["changes"], {"title": {"old": "on_update", "new": "saved"}})
		self.assertNotIn("via", payload(saved))
		self.assertEqual(payload(written)["via"], "set_value")
		self.assertEqual(
			payload(written)["changes"], {"note": {"old": None, "new": "set_value in on_update"}}
		)

	def test_a_write_in_after_insert_follows_created(self):
		start = last_seq()
		with order_hooks(__name__, after_insert="note_by_set_value"):
			order = new_order("after_insert")
		frappe.db.commit()
		created, written = events_after(start, ORDER, order.name)
		self.assertEqual(types_of([created, written]), [CREATED, UPDATED])
		self.assertEqual(
			payload(written)["changes"], {"note": {"old": None, "new": "set_value in after_insert"}}
		)
		self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), "set_value in after_insert")

	def test_a_write_in_after_rename_follows_the_renamed_event(self):
		# The renamed event tells consumers the new name: an update under it must not come first.
		# A db_set changes the object the renamed event is built from, and is an event of its
		# own: its update comes after the renamed event too, and still tells what it changed.
		for hook, via, note in (
			("note_by_set_value_under_the_new_name", "set_value", "renamed from {}"),
			("note_by_db_set_under_the_new_name", "db_set", "db_set after renaming {}"),
			("note_by_save_under_the_new_name", None, "saved after renaming {}"),
		):
			with self.subTest(via=via):
				order = new_order(f"rename by {via}")
				frappe.db.commit()
				start = last_seq()
				with order_hooks(__name__, after_rename=hook):
					new_name = frappe.rename_doc(ORDER, order.name, f"{order.name}-renamed")
				frappe.db.commit()
				renamed, written = events_after(start, ORDER)
				self.assertEqual(types_of([renamed, written]), ["fabric_test_order.renamed", UPDATED])
				self.assertEqual(written["data"]["entityId"], new_name)
				self.assertEqual(payload(written).get("via"), via)
				new_note = note.format(order.name)
				self.assertEqual(payload(written)["changes"], {"note": {"old": None, "new": new_note}})
				self.assertEqual(
					payload(written)["doc"]["note"], frappe.db.get_value(ORDER, new_name, "note")
				)

	def test_a_write_before_the_save_wrote_its_row_is_overwritten_and_told_by_nobody(self):
		order, (saved,) = save_with_hooks(
			__name__, "validate", new_title="validated", validate="note_by_set_value"
		)
		self.assertEqual(payload(saved)["changes"], {"title": {"old": "validate", "new": "validated"}})
		self.assertIsNone(frappe.db.get_value(ORDER, order.name, "note"))

	def test_a_write_of_a_save_that_raised_is_recorded_at_commit(self):
		order = new_order("refused")
		frappe.db.commit()
		start = last_seq()
		with order_hooks(__name__, on_update="note_by_set_value_then_refuse"):
			order.title = "never saved"
			with self.assertRaises(frappe.ValidationError):
				order.save()
		# The caller catches the error and commits what was written.
		frappe.db.commit()
		events = events_after(start, ORDER)
		self.assertEqual(types_of(events), [UPDATED])
		self.assertEqual(payload(events[0])["via"], "set_value")
		stored = frappe.get_doc(ORDER, order.name)
		self.assertEqual(payload(events[0])["doc"]["note"], stored.note)
		self.assertEqual(payload(events[0])["doc"]["title"], stored.title)

	def test_a_write_committed_by_the_saves_own_hooks_is_told_again_after_its_event(self):
		# The commit records the write (its save has no event yet); the save's event then carries
		# the saved object, which does not hold the value: an update after it tells the value as
		# stored again, so the document's last event is not older than its row.
		order, events = save_with_hooks(
			__name__, "committed in a hook", on_update="note_by_set_value_then_commit"
		)
		self.assertEqual([payload(e).get("via") for e in events], ["set_value", None, "set_value"])
		self.assertEqual(
			payload(events[1])["changes"], {"title": {"old": "committed in a hook", "new": "saved"}}
		)
		self.assertEqual(
			payload(events[2])["changes"], {"note": {"old": None, "new": "set_value in on_update"}}
		)
		stored = frappe.get_doc(ORDER, order.name)
		self.assertEqual(payload(events[-1])["doc"]["note"], stored.note)
		self.assertEqual(payload(events[-1])["doc"]["title"], stored.title)

	def test_a_write_after_a_save_that_raised_is_its_own_event(self):
		# Frappe leaves a save that raised in currently_saving: a write after it, outside any
		# save, must not wait for a save of that document, whose event would not tell it.
		written, saved = write_after_a_refused_save(
			"failed", lambda order: frappe.db.set_value(ORDER, order.name, "note", "marked as failed")
		)
		self.assertEqual(payload(written)["via"], "set_value")
		self.assertEqual(payload(written)["changes"], {"note": {"old": None, "new": "marked as failed"}})
		self.assertEqual(payload(saved)["changes"], {"title": {"old": "failed", "new": "saved again"}})


class TestSetValueOnRowsAndSingles(EmissionCase):
	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_a_write_to_a_row_is_its_parents_update_at_commit(self):
		order = new_order("rows")
		frappe.db.commit()
		start = last_seq()
		first, second = order.items
		frappe.db.set_value(ORDER_ITEM, second.name, "qty", 8)
		frappe.db.set_value(ORDER_ITEM, {"parent": order.name, "item": "cauldron"}, "qty", 2)
		self.assertEqual(events_after(start, ORDER), [])  # held for the commit
		frappe.db.commit()
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["via"], "set_value")
		change = payload(event)["changes"]["items"]
		self.assertEqual([row["qty"] for row in change["old"]], [1, 3])
		self.assertEqual([row["qty"] for row in change["new"]], [2, 8])
		self.assertEqual({row["name"] for row in change["new"]}, {first.name, second.name})

	def test_a_row_written_after_its_parents_save_raised_is_its_parents_update(self):
		# As for the document itself: the row's write comes from no save, and the parent's next
		# save starts from the row as written.
		written, saved = write_after_a_refused_save(
			"failed, rows", lambda order: frappe.db.set_value(ORDER_ITEM, order.items[1].name, "qty", 42)
		)
		self.assertEqual(payload(written)["via"], "set_value")
		change = payload(written)["changes"]["items"]
		self.assertEqual([[row["qty"] for row in change[side]] for side in ("old", "new")], [[1, 3], [1, 42]])
		self.assertEqual(list(payload(saved)["changes"]), ["title"])

	def test_a_single_written_with_set_single_value_is_a_system_change(self):
		ensure_custom_doctype(
			SINGLE, [{"fieldname": "limit", "fieldtype": "Int", "label": "Limit"}], issingle=1
		)
		frappe.db.set_single_value(SINGLE, "limit", 1)
		frappe.db.commit()
		for write in (
			lambda: frappe.db.set_single_value(SINGLE, "limit", 5),
			lambda: frappe.db.set_value(SINGLE, SINGLE, "limit", 6),  # Frappe's older spellings
			lambda: frappe.db.set_value(SINGLE, None, "limit", 8),
			lambda: frappe.db.set_value(SINGLE, None, {"limit": 6}),
			lambda: frappe.get_single(SINGLE).db_set("limit", 7),
		):
			start = last_seq()
			write()
			(event,) = events_after(start, SINGLE)
			self.assertEqual(event["type"], "system.change")
		start = last_seq()
		frappe.db.set_single_value(SINGLE, "limit", 9)
		(event,) = events_after(start, SINGLE)
		self.assertEqual(payload(event)["via"], "set_value")
		self.assertEqual(payload(event)["changes"], {"limit": {"old": 7, "new": 9}})
		frappe.db.commit()


class TestSetValueAgainstOlderSchemas(EmissionCase):
	def test_a_write_is_never_refused_for_its_event(self):
		# Until the migrate registers the derived schemas that allow ``via: set_value`` (and for
		# good where a subject's mode refuses them), the latest schema allows db_set only: a
		# write that Frappe itself checks nothing on must not fail for the event the fabric adds.
		order = new_order("older schema")
		frappe.db.commit()
		schema = copy.deepcopy(derived_schemas(ORDER)[UPDATED])
		schema["properties"]["via"]["enum"] = ["db_set"]
		row = order.items[0]
		with fabric_settings(invalid_event_policy="Reject"):
			try:
				subjects.set_subject_mode(UPDATED, "NONE")
				versions.register_schema(UPDATED, schema)
				start = last_seq()
				frappe.db.set_value(ORDER, order.name, "note", "written anyway")
				frappe.db.set_value(ORDER_ITEM, row.name, "qty", 4)
				record_row_changes()  # what the commit runs first, without committing the schema
				self.assertEqual(frappe.db.get_value(ORDER, order.name, "note"), "written anyway")
				events = events_after(start, ORDER)
				self.assertEqual([payload(e)["via"] for e in events], ["set_value", "set_value"])
				stored = frappe.get_all(
					"Event Log",
					filters={"event_id": ("in", [e["id"] for e in events])},
					fields=["status", "last_error"],
				)
				self.assertEqual([entry.status for entry in stored], ["Invalid", "Invalid"])
				self.assertTrue(all("via" in entry.last_error for entry in stored))
				# A db_set's own event is judged as before: this schema refuses it nothing.
				order.db_set("note", "by db_set")
				self.assertNotEqual(frappe.db.get_value("Event Log", last_seq(), "status"), "Invalid")
			finally:
				frappe.db.rollback()

	def test_a_rows_db_update_is_never_refused_for_its_event(self):
		# A row written with db_update is its parent's update at commit, like a row's set_value:
		# under the same older schema, the commit must not fail for the event the fabric adds.
		order = new_order("older schema, row")
		frappe.db.commit()
		schema = copy.deepcopy(derived_schemas(ORDER)[UPDATED])
		schema["properties"]["via"]["enum"] = ["db_set"]
		with fabric_settings(invalid_event_policy="Reject"):
			try:
				subjects.set_subject_mode(UPDATED, "NONE")
				versions.register_schema(UPDATED, schema)
				start = last_seq()
				row = frappe.get_doc(ORDER_ITEM, order.items[0].name)
				row.qty = 9
				row.db_update()
				record_row_changes()  # what the commit runs first, without committing the schema
				(event,) = events_after(start, ORDER)
				self.assertEqual(payload(event)["via"], "db_update")
				self.assertEqual(
					frappe.db.get_value("Event Log", {"event_id": event["id"]}, "status"), "Invalid"
				)
			finally:
				frappe.db.rollback()


class TestDbUpdate(EmissionCase):
	"""A document's or row's db_update() outside Frappe's save is an update via db_update."""

	def setUp(self):
		frappe.db.commit()
		super().setUp()

	def test_a_documents_db_update_is_its_update(self):
		order = new_order("db_update")
		frappe.db.commit()
		start = last_seq()
		loaded = frappe.get_doc(ORDER, order.name)
		loaded.note = "written by db_update"
		loaded.db_update()
		(event,) = events_after(start, ORDER)
		self.assertEqual(event["type"], UPDATED)
		self.assertEqual(payload(event)["via"], "db_update")
		self.assertEqual(payload(event)["changes"], {"note": {"old": None, "new": "written by db_update"}})
		frappe.db.commit()
		self.assertEqual(len(events_after(start, ORDER)), 1)

	def test_db_update_all_is_the_documents_update_then_its_rows(self):
		order = new_order("db_update_all")
		frappe.db.commit()
		start = last_seq()
		order.note = "all at once"
		order.items[1].qty = 30
		order.db_update_all()
		frappe.db.commit()
		document, rows = events_after(start, ORDER)
		self.assertEqual([payload(document)["via"], payload(rows)["via"]], ["db_update", "db_update"])
		self.assertEqual(list(payload(document)["changes"]), ["note"])
		change = payload(rows)["changes"]["items"]
		self.assertEqual([[r["qty"] for r in change[side]] for side in ("old", "new")], [[1, 3], [1, 30]])

	def test_saves_write_through_db_update_and_stay_one_event(self):
		order = new_order("saved")
		frappe.db.commit()
		start = last_seq()
		order.title = "saved again"
		order.items[0].qty = 2
		order.save()
		with order_hooks(__name__, on_update="note_by_db_update"):
			order.title = "saved with a hook"
			order.save()
		frappe.db.commit()
		first, second = events_after(start, ORDER)
		self.assertEqual(sorted(payload(first)["changes"]), ["items", "title"])
		self.assertNotIn("via", payload(second))
		self.assertEqual(payload(second)["doc"]["note"], "db_update in on_update")

	def test_a_copy_written_with_db_update_in_a_hook_follows_the_saves_event(self):
		_, (saved, written) = save_with_hooks(__name__, "copy", on_update="note_by_db_update_of_a_copy")
		self.assertEqual(payload(saved)["changes"], {"title": {"old": "copy", "new": "saved"}})
		self.assertEqual(payload(written)["via"], "db_update")
		self.assertEqual(
			payload(written)["changes"], {"note": {"old": None, "new": "db_update of a copy in on_update"}}
		)

	def test_none_turns_db_update_off_too(self):
		order = new_order("off")
		with fabric_settings(capture_set_value=SET_VALUES_NONE):
			start = last_seq()
			order.note = "unseen"
			order.db_update()
			frappe.db.commit()
			self.assertEqual(events_after(start, ORDER), [])
