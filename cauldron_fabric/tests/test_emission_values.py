"""Values travel in events as the site stores them: dates and times, numbers in text, virtual fields."""

from __future__ import annotations

import datetime as dt

import frappe

from cauldron_fabric.emit.changes import TEMPORAL_FORMS, value_forms
from cauldron_fabric.tests.utils import EmissionCase, ensure_custom_doctype, events_after

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


class TestValuesAsStored(EmissionCase):
	"""Each value in a payload is the stored value, whatever form it was given in."""

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

	def test_fields_of_one_name_render_by_their_own_doctypes_type(self):
		# Forms are kept per field name and type for every DocType: User's birth_date is a Date,
		# RQ Worker's a Datetime, whichever the process met first.
		for doctype, fieldtype in (("User", "Date"), ("RQ Worker", "Datetime"), ("User", "Date")):
			meta = frappe.get_meta(doctype)
			meta.__dict__.pop("_fabric_fields", None)  # as the new Meta of another request
			self.assertIs(value_forms(meta)["birth_date"], TEMPORAL_FORMS[fieldtype], doctype)
