"""The document as saved, and what changed since the version before the save."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from frappe.model.base_document import BaseDocument
from frappe.utils import flt, get_datetime, get_timedelta, getdate

from cauldron_fabric.core.schema.doctype_schema import TEXT_TYPES, VARCHAR_TYPES

# Bookkeeping that changes on every save and says nothing about the business change.
IGNORED_FIELDS = frozenset({"modified", "modified_by", "creation", "owner", "lft", "rgt"})


def _as_date(value: Any) -> str:
	return getdate(value).isoformat()


def _as_datetime(value: Any) -> str:
	return str(get_datetime(value))


def _as_time(value: Any) -> str:
	return str(get_timedelta(value))


# A date, datetime or time field holds what the caller assigned until the document is loaded
# again: a data import's datetime in a Date field, "2024-01-05" in a Datetime, "10:30" in a
# Time. The database stores each as its type, so events carry that form (the one a value read
# back from the database renders as): YYYY-MM-DD, YYYY-MM-DD HH:MM:SS[.ffffff], H:MM:SS[.ffffff].
TEMPORAL_FORMS: dict[str, tuple[re.Pattern, Callable[[Any], str]]] = {
	"Date": (re.compile(r"\d{4}-\d{2}-\d{2}"), _as_date),
	"Datetime": (re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.(?!0{6})\d{6})?"), _as_datetime),
	"Time": (re.compile(r"[1-9]?\d:[0-5]\d:[0-5]\d(\.(?!0{6})\d{6})?"), _as_time),
}


# Float, Currency, Percent and Duration columns are decimal(21,9), Rating decimal(3,2): the
# database rounds what a save writes (0.1 + 0.2 is stored as 0.3, 1/3 as 0.333333333), so
# events carry the value rounded the same way (half away from zero, as MariaDB rounds).
DECIMAL_SCALES = {"Float": 9, "Currency": 9, "Percent": 9, "Duration": 9, "Rating": 2}
NEVER = re.compile(r"(?!)")


def _as_decimal(scale: int) -> Callable[[Any], float]:
	quantum = Decimal(1).scaleb(-scale)

	def as_decimal(value: Any) -> float:
		number = flt(value)
		text = repr(number)
		if "e" not in text and len(text) - text.index(".") - 1 <= scale:
			return number  # the usual case (12.5, 100.0): nothing to round
		return float(Decimal(text).quantize(quantum, rounding=ROUND_HALF_UP))

	return as_decimal


DECIMAL_FORMS = {fieldtype: (NEVER, _as_decimal(scale)) for fieldtype, scale in DECIMAL_SCALES.items()}


# Frappe keeps some credentials in plain fields (OAuth clients' client_secret, tokens): an
# event never carries them. Password fields are masked by Frappe already.
SECRET_FIELDNAMES = frozenset(
	{
		"access_token",
		"api_secret",
		"auth_token",
		"client_secret",
		"id_token",
		"password",
		"private_key",
		"refresh_token",
		"secret",
		"secret_key",
		"token",
	}
)
# A text field whose name ends like these holds one too (Website Settings' indexing_refresh_token,
# a Google OAuth refresh token kept in a Data field); a Check named awaiting_password does not.
SECRET_SUFFIXES = ("_authorization_code", "_password", "_private_key", "_secret", "_secret_key", "_token")
MASK = "*****"
MASKED = (re.compile(r"\**"), lambda value: MASK)  # empty or already masked stays as it is


def _as_text(value: Any) -> Any:
	if isinstance(value, bool):
		return str(int(value))  # the driver writes True as 1
	return str(value) if isinstance(value, int | float) else value


# A Data, Link or Select field holds the number it was given (a Link to a DocType named by
# autoincrement holds the integer name), and its column stores the number's text. No pattern:
# any string is as stored.
TEXT_FORM = (None, _as_text)
STRING_TYPES = VARCHAR_TYPES | TEXT_TYPES


def _form_of(fieldname: str, fieldtype: str) -> tuple[re.Pattern | None, Callable[[Any], Any]] | None:
	"""Returns how events render a field's values, from its name and type (None: as they are)."""
	# A credential, as the field's name says.
	if fieldname in SECRET_FIELDNAMES or (fieldtype in STRING_TYPES and fieldname.endswith(SECRET_SUFFIXES)):
		return MASKED
	if fieldtype in TEMPORAL_FORMS:
		return TEMPORAL_FORMS[fieldtype]
	if fieldtype in DECIMAL_FORMS:
		return DECIMAL_FORMS[fieldtype]
	return TEXT_FORM if fieldtype in STRING_TYPES else None


# Forms by (fieldname, fieldtype), which alone decide them, for every DocType of the process.
# Frappe hands each request a new Meta (read from Redis), so what is cached on it is worked out
# again by the first event of every request: this keeps that to one lookup per field.
_FORMS_BY_FIELD: dict[tuple[str, str], Any] = {}
_UNKNOWN = object()


def _fields_of(meta) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
	"""Returns what events need of ``meta``'s fields (cached on meta), in one pass over them: the
	forms of value_forms, the fields whose strings those forms check, the virtual fields."""
	found = meta.__dict__.get("_fabric_fields")
	if found is None:
		forms: dict[str, Any] = {}
		virtual = set()
		for df in meta.fields:
			values = df.__dict__  # what DocField.get and its attributes read, without the calls
			if values.get("is_virtual"):
				virtual.add(values.get("fieldname"))
				continue
			key = (values.get("fieldname"), values.get("fieldtype"))
			form = _FORMS_BY_FIELD.get(key, _UNKNOWN)
			if form is _UNKNOWN:
				form = _FORMS_BY_FIELD[key] = _form_of(*key)
			if form is not None:
				forms[key[0]] = form
		checked = frozenset(fieldname for fieldname, form in forms.items() if form[0] is not None)
		found = meta.__dict__["_fabric_fields"] = (forms, checked, frozenset(virtual))
	return found


def value_forms(meta) -> dict[str, tuple[re.Pattern | None, Callable[[Any], Any]]]:
	"""Returns the fields whose values events render specially, with their form (cached on meta).

	Dates, datetimes, times, decimals and text in their stored form; secrets masked.
	"""
	return _fields_of(meta)[0]


def as_stored(form: tuple[re.Pattern | None, Callable[[Any], Any]] | None, value: Any) -> Any:
	"""Returns a value as events give it: a date, time, number or text as stored, a secret masked."""
	if form is None or value is None:
		return value
	if isinstance(value, str) and (form[0] is None or form[0].fullmatch(value)):
		return value
	try:
		return form[1](value)
	except Exception:
		return value  # not a date at all: the schema check names it


def _normalise(data: dict[str, Any], meta) -> None:
	"""Drops Frappe's in-memory keys, renders temporal fields as stored and masks secrets, in place."""
	_drop_internal(data)
	for fieldname, form in value_forms(meta).items():
		if fieldname in data:
			data[fieldname] = as_stored(form, data[fieldname])


def document_payload(doc) -> dict[str, Any]:
	"""Returns the document with its child tables, values as stored, internals stripped."""
	# BaseDocument's as_dict, not the document's: some controllers (Page) override it with
	# another signature.
	data = BaseDocument.as_dict(doc, convert_dates_to_str=True, no_nulls=False)
	_normalise(data, doc.meta)
	for fieldname in doc._table_fieldnames:
		rows = data.get(fieldname)
		if rows:
			child_meta = doc.get(fieldname)[0].meta
			for row in rows:
				_normalise(row, child_meta)
	return data


# Desk's bookkeeping columns: tags, likes, the comment and assignment caches, who has seen the
# document. Frappe sets them with plain queries (no save, no event), so a payload would show
# them only on the next save, as stale noise; a change of them alone is no event either.
DESK_COLUMNS = frozenset({"_user_tags", "_liked_by", "_comments", "_assign", "_seen"})


def _drop_internal(row: dict[str, Any]) -> None:
	"""Removes Frappe's in-memory flags (__islocal, __unsaved, __onload …) and Desk's bookkeeping
	columns (_user_tags, _liked_by …) from a row."""
	for key in [key for key in row if key.startswith("__") or key in DESK_COLUMNS]:
		del row[key]


def document_changes(before, after: dict[str, Any]) -> dict[str, Any] | None:
	"""Returns ``{field: {"old": …, "new": …}}`` for every field that changed; None when unknown.

	``before`` is a document or the payload of an earlier event.

	Child tables count as changed when any row's content, order or number changed; both
	versions of the table are given then.
	"""
	if before is None:
		return None
	# A document is compared value by value, in the form document_payload gives (dates as
	# str()): rendering the whole previous version would cost as much as the payload itself.
	old_of = before.get if isinstance(before, dict) else _reader_of(before)
	changes: dict[str, Any] = {}
	for key, new in after.items():
		if key in IGNORED_FIELDS or key.startswith("_"):
			continue
		if isinstance(new, list):
			old_rows = before.get(key) or []
			if _rows_differ(old_rows, new):
				changes[key] = {"old": [row_payload(row) for row in old_rows], "new": new}
			continue
		old = old_of(key)
		if old != new:
			changes[key] = {"old": old, "new": new}
	return changes


def _reader_of(doc) -> Callable[[str], Any]:
	"""Returns a reader of ``doc``'s values in the form document_payload gives them."""
	return _readers_of(doc.meta)(doc)


def _readers_of(meta) -> Callable[[Any], Callable[[str], Any]]:
	"""Returns a maker of value readers for documents of ``meta``.

	What the DocType decides (forms, checked strings, virtual fields) is looked up once, so a
	child table is compared with one lookup rather than one per row.
	"""
	forms = value_forms(meta)
	checked = _checked_strings(meta)
	virtual = _virtual_fields(meta)

	def reader_of(doc) -> Callable[[str], Any]:
		computed = _virtual_values(doc, virtual) if virtual else {}
		held = _dict_reader(doc) or doc.get  # a child table's rows are compared value by value

		def value_of(key: str) -> Any:
			if key in computed:
				return computed[key]
			value = held(key)
			if isinstance(value, str) and key not in checked:
				return value  # text is held as it is stored: most values of most saves
			if value is None:
				return None  # an empty field, as stored and as rendered
			return as_stored(forms.get(key), _plain(value))

		return value_of

	return reader_of


def _checked_strings(meta) -> frozenset[str]:
	"""Returns the fields whose string values events may render otherwise (dates, times,
	secrets), cached on meta."""
	return _fields_of(meta)[1]


def _virtual_fields(meta) -> frozenset[str]:
	"""Returns the fieldnames of ``meta``'s virtual fields, cached on meta."""
	return _fields_of(meta)[2]


def _virtual_values(doc, virtual: frozenset[str]) -> dict[str, Any]:
	"""Returns the values of ``doc``'s virtual fields as its payload gives them.

	A virtual field is no column: the document loaded before a save does not hold its value,
	the payload computes it (as_dict), so read as it is held every save would change it.
	"""
	values = BaseDocument.get_valid_dict(doc, convert_dates_to_str=True)
	return {fieldname: values[fieldname] for fieldname in virtual if fieldname in values}


def _plain(value: Any) -> Any:
	"""Renders a stored value the way as_dict(convert_dates_to_str=True) does."""
	return str(value) if isinstance(value, dt.date | dt.time | dt.timedelta) else value


def row_payload(row) -> dict[str, Any]:
	"""Returns a child row as the payload gives it (a row already in that form as it is)."""
	if isinstance(row, dict):
		return row
	data = BaseDocument.as_dict(row, convert_dates_to_str=True, no_nulls=False)
	_normalise(data, row.meta)
	return data


def _rows_differ(old_rows: list, new_rows: list[dict[str, Any]]) -> bool:
	if len(old_rows) != len(new_rows):
		return True
	readers_of = None  # built on the first row that is a document: all rows share one DocType
	for old, new in zip(old_rows, new_rows, strict=True):
		if isinstance(old, dict):
			old_of = held = old.get
		else:
			readers_of = readers_of or _readers_of(old.meta)
			old_of = readers_of(old)
			held = _held_reader(old) or old_of
		for key, value in new.items():
			if key in IGNORED_FIELDS or key.startswith("_"):
				continue
			if held(key) != value and old_of(key) != value:
				return True
	return False


def _held_reader(row) -> Callable[[str], Any] | None:
	"""Returns a reader of the values a loaded row holds, unrendered, when one equal to the
	payload's value renders as that value too (None otherwise); comparing those first spares
	the rendering of every value of every row of an unchanged table.

	Rendering changes dates, times and timedeltas (never equal to the payload's text), numbers in
	text fields (never equal to text), decimals (a number equal to a rounded one renders as it)
	and secrets (a masked value renders as itself), and gives what it gave again. A virtual
	field's value is computed rather than held, and a controller's own get may read otherwise.
	"""
	return None if _virtual_fields(row.meta) else _dict_reader(row)


def _dict_reader(doc) -> Callable[[str], Any] | None:
	"""Returns ``doc.__dict__.get``, which is what BaseDocument.get(key) does for a plain key
	without its filter handling, unless the controller has a get of its own (then None)."""
	return doc.__dict__.get if type(doc).get is BaseDocument.get else None
