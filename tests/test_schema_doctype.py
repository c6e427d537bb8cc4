"""Schemas derived from DocType fields: types, mandatory fields, selects, child tables, evolution."""

import copy

import pytest

from cauldron_fabric.core.schema.compatibility import check_compatibility
from cauldron_fabric.core.schema.dialect import check_schema
from cauldron_fabric.core.schema.doctype_schema import doctype_schema, document_event_schemas, field_schema
from cauldron_fabric.core.schema.validation import CompiledSchema

# Field lists as frappe.get_meta(...).fields gives them, converted to dicts.
INVOICE_FIELDS = [
	{"fieldname": "naming_series", "fieldtype": "Select", "options": "ACC-SINV-.YYYY.-", "reqd": 1},
	{"fieldname": "customer", "fieldtype": "Link", "options": "Customer", "reqd": 1, "label": "Customer"},
	{"fieldname": "section_break_1", "fieldtype": "Section Break"},
	{"fieldname": "posting_date", "fieldtype": "Date", "reqd": 1},
	{"fieldname": "posting_time", "fieldtype": "Time"},
	{"fieldname": "due_date", "fieldtype": "Date"},
	{"fieldname": "is_return", "fieldtype": "Check"},
	{"fieldname": "status", "fieldtype": "Select", "options": "\nDraft\nUnpaid\nPaid\nCancelled"},
	{"fieldname": "grand_total", "fieldtype": "Currency", "non_negative": 1},
	{"fieldname": "total_qty", "fieldtype": "Float"},
	{"fieldname": "contact_email", "fieldtype": "Data", "options": "Email"},
	{"fieldname": "remarks", "fieldtype": "Small Text"},
	{"fieldname": "amended_from", "fieldtype": "Link", "options": "Sales Invoice"},
	{"fieldname": "items", "fieldtype": "Table", "options": "Sales Invoice Item", "reqd": 1},
	{"fieldname": "custom_payload", "fieldtype": "JSON"},
	{"fieldname": "last_synced", "fieldtype": "Datetime"},
]
ITEM_FIELDS = [
	{"fieldname": "item_code", "fieldtype": "Link", "options": "Item", "reqd": 1},
	{"fieldname": "qty", "fieldtype": "Float", "reqd": 1},
	{"fieldname": "rate", "fieldtype": "Currency"},
	{"fieldname": "idx_note", "fieldtype": "Int"},
]
CHILDREN = {"Sales Invoice Item": ITEM_FIELDS}


def invoice():
	"""A document as doc.as_dict(convert_dates_to_str=True) gives it."""
	return {
		"doctype": "Sales Invoice",
		"name": "ACC-SINV-2026-00042",
		"owner": "Administrator",
		"creation": "2026-03-02 10:00:00.123456",
		"modified": "2026-03-02 10:05:00",
		"modified_by": "Administrator",
		"docstatus": 1,
		"idx": 0,
		"naming_series": "ACC-SINV-.YYYY.-",
		"customer": "Grant Plastics",
		"posting_date": "2026-03-02",
		"posting_time": "9:05:00.250000",
		"due_date": None,
		"is_return": 0,
		"status": "Unpaid",
		"grand_total": 1190.0,
		"total_qty": 10.0,
		"contact_email": None,
		"remarks": None,
		"amended_from": None,
		"custom_payload": '{"a": 1}',
		"last_synced": None,
		"_user_tags": ",vip",
		"_comments": "[]",
		"items": [
			{
				"doctype": "Sales Invoice Item",
				"name": "row-1",
				"parent": "ACC-SINV-2026-00042",
				"parentfield": "items",
				"parenttype": "Sales Invoice",
				"idx": 1,
				"docstatus": 1,
				"item_code": "WIDGET-01",
				"qty": 10.0,
				"rate": 119.0,
				"idx_note": None,
			}
		],
	}


@pytest.fixture(scope="module")
def compiled():
	return CompiledSchema(doctype_schema("Sales Invoice", INVOICE_FIELDS, CHILDREN))


def test_the_derived_schema_is_valid_and_accepts_a_real_document(compiled):
	check_schema(compiled.schema)
	assert compiled.violations(invoice()) == []
	assert compiled.compiled


def test_values_frappe_itself_produces_are_accepted(compiled):
	document = invoice()
	document.update(is_return=True, status="", name=42)
	document["items"][0]["parent"] = 42
	assert compiled.violations(document) == []
	assert compiled.is_valid(document)


def test_field_types_map_to_json_schema():
	table = {
		"Int": {"type": "integer"},
		"Check": {"enum": [0, 1, False, True]},
		"Float": {"type": "number"},
		"Currency": {"type": "number"},
		"Date": {"type": "string", "format": "date"},
		"Data": {"type": "string", "maxLength": 140},
		"Text Editor": {"type": "string"},
	}
	for fieldtype, expected in table.items():
		schema = field_schema({"fieldname": "f", "fieldtype": fieldtype}, {})
		assert {k: v for k, v in schema.items() if not k.startswith("x-")} == expected, fieldtype
	select = field_schema({"fieldtype": "Select", "options": "\nA\nB"}, {})
	assert select["type"] == "string" and "enum" not in select
	assert select["x-frappe-options"] == ["A", "B"]
	series = field_schema({"fieldname": "naming_series", "fieldtype": "Select", "options": "SINV-.#"}, {})
	assert "x-frappe-options" not in series
	password = field_schema({"fieldtype": "Password"}, {})
	assert password["type"] == "string" and "maxLength" not in password
	virtual = field_schema({"fieldname": "v", "fieldtype": "Int", "is_virtual": 1}, {})
	assert {k: v for k, v in virtual.items() if not k.startswith("x-")} == {}
	link = field_schema({"fieldtype": "Link", "options": "Customer", "length": 60}, {})
	assert link["maxLength"] == 60 and link["x-frappe-options"] == "Customer"
	assert field_schema({"fieldtype": "JSON"}, {}) == {"x-frappe-fieldtype": "JSON"}


@pytest.mark.parametrize(
	"change, path, rule",
	[
		(lambda d: d.pop("customer"), "$.customer", "required"),
		(lambda d: d.update(is_return=2), "$.is_return", "enum"),
		(lambda d: d.update(grand_total=-1), "$.grand_total", "minimum"),
		(lambda d: d.update(posting_date="02/03/2026"), "$.posting_date", "format"),
		(lambda d: d.update(last_synced="yesterday"), "$.last_synced", "pattern"),
		(lambda d: d.update(contact_email="not-an-email"), "$.contact_email", "format"),
		(lambda d: d.update(docstatus=3), "$.docstatus", "enum"),
		(lambda d: d.update(doctype="Purchase Invoice"), "$.doctype", "const"),
		(lambda d: d.update(unknown_field=1), "$.unknown_field", "additionalProperties"),
		(lambda d: d["items"][0].pop("qty"), "$.items[0].qty", "required"),
		(lambda d: d["items"][0].update(qty="ten"), "$.items[0].qty", "type"),
		(lambda d: d["items"][0].update(parentfield=7), "$.items[0].parentfield", "type"),
		(lambda d: d["items"][0].update(stray=1), "$.items[0].stray", "additionalProperties"),
		(lambda d: d.update(items=None), "$.items", "type"),
	],
)
def test_a_broken_document_is_refused_at_the_right_path(compiled, change, path, rule):
	document = invoice()
	change(document)
	assert (path, rule) in {(v.path, v.rule) for v in compiled.violations(document)}
	assert not compiled.is_valid(document)


def test_what_frappe_stores_without_validating_is_accepted(compiled):
	# ignore_mandatory leaves a mandatory field empty; a data import skips the option check of
	# a Select; a row keeps an option an admin later removed. Refusing these would refuse
	# saves, cancels and deletes that Frappe allows.
	document = invoice()
	document.update(customer=None, status="Lost", posting_date=None)
	document["items"][0]["qty"] = None
	assert compiled.violations(document) == []


def test_mandatory_fields_stay_required_and_documented(compiled):
	properties = compiled.schema["properties"]
	assert "customer" in compiled.schema["required"]
	assert properties["customer"]["x-frappe-reqd"] is True
	assert "x-frappe-reqd" not in properties["due_date"]


def test_an_open_model_accepts_unknown_keys():
	schema = doctype_schema("Sales Invoice", INVOICE_FIELDS, CHILDREN, closed=False)
	assert CompiledSchema(schema).is_valid({**invoice(), "unknown_field": 1})


def test_a_missing_child_table_is_named():
	with pytest.raises(ValueError, match="'Sales Invoice Item' of field 'items'"):
		doctype_schema("Sales Invoice", INVOICE_FIELDS, {})


def test_every_lifecycle_action_gets_a_payload_schema():
	schemas = document_event_schemas("Sales Invoice", INVOICE_FIELDS, CHILDREN)
	assert sorted(schemas) == sorted(
		f"sales_invoice.{a}"
		for a in (
			"created",
			"updated",
			"submitted",
			"cancelled",
			"updated_after_submit",
			"deleted",
			"renamed",
		)
	)
	updated = CompiledSchema(schemas["sales_invoice.updated"])
	assert updated.is_valid(
		{"doc": invoice(), "changes": {"status": {"old": "Draft", "new": "Unpaid"}}, "via": "db_set"}
	)
	assert updated.is_valid({"doc": invoice(), "changes": None})
	assert [v.path for v in updated.violations({"doc": invoice(), "changes": {"status": {"old": 1}}})] == [
		"$.changes.status.new"
	]
	renamed = CompiledSchema(schemas["sales_invoice.renamed"])
	assert renamed.is_valid({"doc": invoice(), "oldName": "A", "newName": "B", "merge": False})
	submitted = CompiledSchema(schemas["sales_invoice.submitted"])
	assert [v.path for v in submitted.violations({"doc": invoice(), "oldName": "A"})] == ["$.oldName"]
	# A submit or cancel by a write without hooks (a set_value or SQL of docstatus) says so.
	moved = {"doc": invoice(), "changes": {"docstatus": {"old": 0, "new": 1}}, "via": "sql"}
	assert submitted.is_valid(moved)
	assert CompiledSchema(schemas["sales_invoice.cancelled"]).is_valid(moved)
	assert [v.path for v in submitted.violations({**moved, "via": "save"})] == ["$.via"]
	renamed_in_sql = {"doc": invoice(), "oldName": "A", "newName": "B", "merge": False, "via": "sql"}
	assert renamed.is_valid(renamed_in_sql)
	assert [v.path for v in renamed.violations({**renamed_in_sql, "via": "db_set"})] == ["$.via"]
	assert [v.rule for v in submitted.violations({})] == ["required"]


def test_a_doctype_may_gain_an_optional_field_under_backward():
	before = document_event_schemas("Sales Invoice", INVOICE_FIELDS, CHILDREN)["sales_invoice.submitted"]
	gained = [*INVOICE_FIELDS, {"fieldname": "po_no", "fieldtype": "Data"}]
	after = document_event_schemas("Sales Invoice", gained, CHILDREN)["sales_invoice.submitted"]
	assert check_compatibility(after, [before], "BACKWARD").compatible


def test_dropping_or_retyping_a_field_breaks_backward():
	before = document_event_schemas("Sales Invoice", INVOICE_FIELDS, CHILDREN)["sales_invoice.submitted"]
	fewer = [f for f in INVOICE_FIELDS if f["fieldname"] != "remarks"]
	retyped = copy.deepcopy(INVOICE_FIELDS)
	retyped[1]["fieldtype"] = "Int"
	mandatory = copy.deepcopy(INVOICE_FIELDS)
	mandatory[4]["reqd"] = 1
	expected = {
		"PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL": fewer,
		"TYPE_NARROWED": retyped,  # string or null becomes integer or null
		"REQUIRED_ATTRIBUTE_ADDED": mandatory,
	}
	for rule, fields in expected.items():
		after = document_event_schemas("Sales Invoice", fields, CHILDREN)["sales_invoice.submitted"]
		result = check_compatibility(after, [before], "BACKWARD")
		assert rule in {r.rule for r in result.reasons}, rule
