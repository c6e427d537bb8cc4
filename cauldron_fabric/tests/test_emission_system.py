"""Events about the site itself: configuration changes, the heartbeat, and the Event Log's retention."""

from __future__ import annotations

import frappe
from frappe.modules.import_file import import_doc
from frappe.tests.utils import FrappeTestCase

from cauldron_fabric.emit.scheduled import emit_heartbeat, purge_expired_events
from cauldron_fabric.tests.utils import EmissionCase, ensure_custom_doctype, events_after, last_seq, types_of


class TestSystemEvents(EmissionCase):
	"""Configuration changes are system.change events; the heartbeat describes the site."""

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

	def test_a_migrate_reimporting_a_doctype_is_its_update_and_a_new_one_its_creation(self):
		# Frappe's import (bench migrate, an app's JSON changed) deletes the stored DocType without
		# its hooks and inserts the new one: every upgrade told consumers each DocType it touched
		# was created.
		name = "Fabric Reimported " + frappe.generate_hash(length=6)
		ensure_custom_doctype(name, [{"fieldname": "title", "fieldtype": "Data", "label": "Title"}])
		frappe.db.commit()
		self.addCleanup(frappe.db.commit)
		self.addCleanup(frappe.delete_doc, "DocType", name, ignore_missing=True, force=True)
		docdict = frappe.get_doc("DocType", name).as_dict()
		docdict["fields"] = [
			{key: row[key] for key in ("fieldname", "fieldtype", "label")} for row in docdict["fields"]
		]
		docdict["permissions"] = []
		docdict["fields"].append({"fieldname": "note", "fieldtype": "Data", "label": "Note"})
		fresh = {**docdict, "name": f"{name} New", "fields": docdict["fields"][:1]}
		self.addCleanup(frappe.delete_doc, "DocType", fresh["name"], ignore_missing=True, force=True)
		start = last_seq()
		import_doc(docdict)
		import_doc(fresh)
		frappe.db.commit()
		actions = [
			(e["data"]["entityId"], e["data"]["action"])
			for e in events_after(start)
			if e["type"] == "system.change" and e["data"]["entity"] == "DocType"
		]
		self.assertEqual(actions, [(name, "updated"), (fresh["name"], "created")])
		(updated,) = [e for e in events_after(start) if e["data"]["entityId"] == name]
		self.assertEqual(
			[f["fieldname"] for f in updated["data"]["payload"]["doc"]["fields"]], ["title", "note"]
		)
		# Compared with the DocType as stored before the import deleted it.
		changes = updated["data"]["payload"]["changes"]
		self.assertIn("fields", changes, changes)
		self.assertNotIn("name", changes)

	def test_heartbeat_describes_the_site_and_outbox(self):
		emit_heartbeat()
		(event,) = [e for e in events_after(self.start) if e["type"] == "system.status"]
		payload = event["data"]["payload"]
		self.assertEqual(payload["site"], frappe.local.site)
		self.assertIn("pending", payload["outbox"])
		self.assertEqual(payload["fabricVersion"], __import__("cauldron_fabric").__version__)


class TestRetention(FrappeTestCase):
	"""Old events leave the Event Log once published or recorded; pending and failed ones stay."""

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
