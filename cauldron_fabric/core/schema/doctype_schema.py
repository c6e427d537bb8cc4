"""JSON Schemas for DocType documents and their lifecycle events, derived from the fields.

The Frappe layer passes ``frappe.get_meta(doctype).fields`` (and each child table's fields) as
plain dicts with DocField's keys: ``fieldname``, ``fieldtype``, ``label``, ``reqd``,
``options``, ``length``, ``non_negative``, ``is_virtual``. The schema describes the document as
``doc.as_dict(convert_dates_to_str=True)`` gives it, which is what document events carry:

* dates as ``YYYY-MM-DD``, datetimes as ``YYYY-MM-DD HH:MM:SS[.ffffff]`` (site time, no zone),
  times as ``H:MM:SS[.ffffff]``;
* every field is present; any may be null. Mandatory fields (``reqd``) are listed as required
  but may be null too: Frappe itself stores documents without them (``ignore_mandatory``,
  rows saved before a field became mandatory), and a schema stricter than Frappe would refuse
  saves, cancels and deletes that Frappe allows;
* Select is a string, its options given as ``x-frappe-options`` but not enforced: data
  imports skip Frappe's option check, cancels skip validation, and rows keep options an admin
  later removed. Check is 0, 1, false or true, Link a string, Table an array of rows;
  virtual fields accept any value;
* the standard fields (name, owner, creation, modified, modified_by, docstatus, idx, doctype,
  and parent, parentfield, parenttype on rows) are included.

The model is closed (unknown keys are refused, which catches drift between the DocType and
the events) except for Frappe's underscore keys (``_user_tags``, ``_comments``, ``_assign``,
``_liked_by``, ``_seen``). A closed model is what lets a DocType gain fields under BACKWARD:
adding an optional property to a closed model is compatible, to an open one it is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cauldron_fabric.core.naming import DOCUMENT_ACTIONS, document_event_type
from cauldron_fabric.core.schema.dialect import DRAFT_2020_12

DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$"
TIME_PATTERN = r"^\d{1,2}:\d{2}:\d{2}(\.\d{1,6})?$"
NO_VALUE_TYPES = frozenset(
	{
		"Section Break",
		"Column Break",
		"Tab Break",
		"HTML",
		"Button",
		"Heading",
		"Fold",
		"Image",
		"Table Break",
	}
)
TABLE_TYPES = frozenset({"Table", "Table MultiSelect"})
# Frappe stores these in varchar(140) unless the field sets another length.
VARCHAR_TYPES = frozenset({"Data", "Link", "Dynamic Link", "Select", "Read Only", "Autocomplete"})
TEXT_TYPES = frozenset(
	{
		"Small Text",
		"Text",
		"Long Text",
		"Text Editor",
		"HTML Editor",
		"Markdown Editor",
		"Code",
		"Phone",
		"Barcode",
		"Color",
		"Icon",
		"Signature",
		"Attach",
		"Attach Image",
		"Password",  # a text column; the document holds a mask as long as the secret
	}
)
NUMBER_TYPES = frozenset({"Float", "Currency", "Percent", "Duration", "Rating"})
DATA_FORMATS = {"Email": "email", "URL": "uri"}
UNDERSCORE_KEYS = "^_"
VARCHAR_LENGTH = 140


def field_schema(
	field: Mapping[str, Any], child_tables: Mapping[str, Sequence[Mapping[str, Any]]]
) -> dict[str, Any]:
	"""Returns the schema of one field's value (before nullability is applied)."""
	fieldtype = field.get("fieldtype") or "Data"
	options = (field.get("options") or "").strip()
	schema: dict[str, Any]
	if fieldtype in TABLE_TYPES:
		if options not in child_tables:
			raise ValueError(
				f"the child table {options!r} of field {field.get('fieldname')!r} has no field list; "
				"pass it in child_tables"
			)
		schema = {
			"type": "array",
			"items": _document(options, child_tables[options], child_tables, child=True),
		}
	elif fieldtype == "Select":
		schema = {"type": "string"}
		choices = [line.strip() for line in options.splitlines() if line.strip()]
		if choices and field.get("fieldname") != "naming_series":
			schema["x-frappe-options"] = choices
	elif fieldtype in VARCHAR_TYPES or fieldtype in TEXT_TYPES:
		schema = {"type": "string"}
		if fieldtype in VARCHAR_TYPES:
			schema["maxLength"] = int(field.get("length") or VARCHAR_LENGTH)
		if fieldtype == "Data" and options in DATA_FORMATS:
			schema["format"] = DATA_FORMATS[options]
		if fieldtype in ("Link", "Dynamic Link") and options:
			schema["x-frappe-options"] = options
	elif fieldtype == "Int":
		schema = {"type": "integer"}
	elif fieldtype == "Check":
		# db_set stores what it is given, so a flag set to True travels as true.
		schema = {"enum": [0, 1, False, True]}
	elif fieldtype in NUMBER_TYPES:
		schema = {"type": "number"}
	elif fieldtype == "Date":
		schema = {"type": "string", "format": "date"}
	elif fieldtype == "Datetime":
		schema = {"type": "string", "pattern": DATETIME_PATTERN}
	elif fieldtype == "Time":
		schema = {"type": "string", "pattern": TIME_PATTERN}
	elif fieldtype == "Geolocation":
		schema = {"type": ["string", "object"]}
	else:
		# JSON fields hold any JSON value; unknown field types are described, not guessed.
		schema = {}
	if field.get("is_virtual"):
		# A virtual field's value comes from code, not from the column its type describes.
		schema = {}
	if field.get("non_negative") and schema.get("type") in ("integer", "number"):
		schema["minimum"] = 0
	if field.get("label"):
		schema["title"] = str(field["label"])
	schema["x-frappe-fieldtype"] = fieldtype
	return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
	declared = schema.get("type")
	if declared is None:
		if "enum" in schema and None not in schema["enum"]:
			return {**schema, "enum": [*schema["enum"], None]}
		return schema
	types = [declared] if isinstance(declared, str) else list(declared)
	result = {**schema, "type": [*types, "null"]}
	if "enum" in schema:
		result["enum"] = [*schema["enum"], None]
	return result


def _standard_properties(doctype: str, child: bool) -> dict[str, Any]:
	text = {"type": "string", "maxLength": VARCHAR_LENGTH}
	# Names of DocTypes named by "autoincrement" are integers (and so are their rows' parent).
	key = {"type": ["string", "integer"], "maxLength": VARCHAR_LENGTH}
	moment = {"type": "string", "pattern": DATETIME_PATTERN}
	properties: dict[str, Any] = {
		"doctype": {"const": doctype},
		"name": key,
		"owner": text,
		"creation": moment,
		"modified": moment,
		"modified_by": text,
		"docstatus": {"type": "integer", "enum": [0, 1, 2]},
		"idx": {"type": "integer", "minimum": 0},
	}
	if child:
		properties.update({"parent": key, "parentfield": text, "parenttype": text})
	return properties


def _document(
	doctype: str,
	fields: Sequence[Mapping[str, Any]],
	child_tables: Mapping[str, Sequence[Mapping[str, Any]]],
	child: bool = False,
	closed: bool = True,
) -> dict[str, Any]:
	properties = _standard_properties(doctype, child)
	required = ["doctype", "name", "docstatus"]
	for field in fields:
		name = field.get("fieldname")
		if not name or (field.get("fieldtype") or "Data") in NO_VALUE_TYPES:
			continue
		schema = field_schema(field, child_tables)
		if field.get("fieldtype") in TABLE_TYPES:
			properties[name] = schema
		else:
			properties[name] = _nullable(schema)
		if field.get("reqd") and not field.get("is_virtual"):
			properties[name]["x-frappe-reqd"] = True
			required.append(name)
	document: dict[str, Any] = {
		"type": "object",
		"title": doctype,
		"required": list(dict.fromkeys(required)),
		"properties": properties,
	}
	if closed:
		document["patternProperties"] = {UNDERSCORE_KEYS: {}}
		document["additionalProperties"] = False
	return document


def doctype_schema(
	doctype: str,
	fields: Sequence[Mapping[str, Any]],
	child_tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
	closed: bool = True,
) -> dict[str, Any]:
	"""Returns the JSON Schema (draft 2020-12) of one document of ``doctype``.

	``child_tables`` maps each child DocType named by a Table field to its field list;
	``closed=False`` accepts unknown keys as well.
	"""
	schema = _document(doctype, fields, child_tables or {}, closed=closed)
	return {"$schema": DRAFT_2020_12, **schema}


def document_event_schema(
	doctype: str,
	action: str,
	fields: Sequence[Mapping[str, Any]],
	child_tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
	closed: bool = True,
) -> dict[str, Any]:
	"""Returns the payload schema of the event ``<doctype>.<action>`` (``sales_invoice.submitted``).

	The payload is ``{"doc": <document>}``; updates, and submits or cancels by a write without
	hooks, add ``changes`` (``{field: {old, new}}``, or null when unknown) and ``via``
	(``db_set``, ``set_value``, ``db_update``, ``sql``); a creation, deletion or rename by raw SQL
	adds ``via`` (``sql``); renames add ``oldName``, ``newName``, ``merge``.
	"""
	event_type = document_event_type(doctype, action)
	properties: dict[str, Any] = {"doc": _document(doctype, fields, child_tables or {}, closed=closed)}
	if action in ("updated", "updated_after_submit", "submitted", "cancelled"):
		# A write without hooks that moves docstatus is a submit or cancel with what it changed.
		change = {"type": "object", "required": ["old", "new"], "properties": {"old": {}, "new": {}}}
		properties["changes"] = {"type": ["object", "null"], "additionalProperties": change}
		properties["via"] = {"type": "string", "enum": ["db_set", "set_value", "db_update", "sql"]}
	if action in ("created", "deleted", "renamed"):
		properties["via"] = {"type": "string", "enum": ["sql"]}
	if action == "renamed":
		properties["oldName"] = {"type": ["string", "null"]}
		properties["newName"] = {"type": ["string", "null"]}
		properties["merge"] = {"type": "boolean"}
	return {
		"$schema": DRAFT_2020_12,
		"title": f"{event_type} payload",
		"description": f"The {doctype} document after it was {action.replace('_', ' ')}.",
		"type": "object",
		"required": ["doc"],
		"properties": properties,
		"additionalProperties": not closed,
	}


def document_event_schemas(
	doctype: str,
	fields: Sequence[Mapping[str, Any]],
	child_tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
	closed: bool = True,
) -> dict[str, dict[str, Any]]:
	"""Returns ``{event type: payload schema}`` for every lifecycle action of a DocType."""
	return {
		document_event_type(doctype, action): document_event_schema(
			doctype, action, fields, child_tables, closed
		)
		for action in DOCUMENT_ACTIONS
	}
