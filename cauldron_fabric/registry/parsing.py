"""What callers send the registry, read: schemas, example payloads, version numbers and texts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import frappe
from frappe import _
from frappe.utils.html_utils import sanitize_html

from cauldron_fabric.core.envelope import json_depth
from cauldron_fabric.core.markup import has_markup
from cauldron_fabric.core.schema import InvalidSchema, check_schema
from cauldron_fabric.core.schema.depth import MAX_SCHEMA_DEPTH, json_text_depth, too_deep
from cauldron_fabric.registry.errors import InvalidSchemaError, InvalidVersion

MAX_VERSION = 2**31 - 1
# A version number: ASCII digits, at most as many as MAX_VERSION has. int() alone also takes
# full-width digits and "1_0", and refuses thousands of digits with a ValueError.
VERSION_NUMBER = re.compile("[0-9]{1,10}")
# How much of a text sent a message quotes.
SHOWN_CHARACTERS = 60
# Bytes a column of each text type holds (MariaDB); varchar columns hold characters instead.
TEXT_COLUMN_BYTES = {"text": 2**16 - 1, "mediumtext": 2**24 - 1, "longtext": 2**32 - 1}


def parse_schema(value: Any, trusted: bool = False) -> Any:
	"""Returns the schema as JSON data; raises InvalidSchemaError (42201) naming every defect.

	``trusted`` skips the meta-schema check, for schemas the fabric derived itself.
	"""
	if isinstance(value, str):
		value = _load_json(value, "the schema")
	if trusted:
		return value
	with invalid_schemas():
		check_schema(value)
	return value


@contextmanager
def invalid_schemas() -> Iterator[None]:
	"""Turns the core's InvalidSchema (a schema, or an earlier version, that cannot be used) into 42201."""
	try:
		yield
	except InvalidSchema as exc:
		raise InvalidSchemaError(
			_("Invalid JSON Schema: {0}. Write a draft 2020-12 (or draft-07) schema.").format(
				"; ".join(exc.problems)
			)
		) from None


def _load_json(text: str, label: str) -> Any:
	"""Returns JSON text parsed; raises InvalidSchemaError when it is not JSON or nests too deeply to read."""
	try:
		return json.loads(text)
	except ValueError as exc:
		raise InvalidSchemaError(_("{0} is not valid JSON: {1}.").format(label.capitalize(), exc)) from None
	except RecursionError:
		# The JSON decoder recurses: thousands of levels exhaust the stack before depth is checked.
		raise InvalidSchemaError(too_deep(json_text_depth(text), f"The JSON of {label}") + ".") from None


def parse_examples(value: Any) -> list[Any]:
	"""Returns the example payloads as a list; raises InvalidSchemaError when they are not one."""
	if value in (None, ""):
		return []
	if isinstance(value, str):
		value = _load_json(value, "the examples")
	if not isinstance(value, list):
		raise InvalidSchemaError(_("The examples must be a JSON list of payloads, such as [{...}]."))
	for number, example in enumerate(value, 1):
		# Examples are payloads, which nest no deeper than a schema may: checking or saving a
		# deeper one would recurse past the stack.
		if (depth := json_depth(example)) > MAX_SCHEMA_DEPTH:
			raise InvalidSchemaError(too_deep(depth, f"Example {number}") + ".")
	return value


def parse_version(value: Any) -> int | None:
	"""Returns a version number, or None for "latest" (and -1); raises InvalidVersion (42202)."""
	if value in (None, "", "latest", -1, "-1"):
		return None
	text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
	number = int(text) if VERSION_NUMBER.fullmatch(text) else 0
	if not 1 <= number <= MAX_VERSION:
		raise InvalidVersion(
			_(
				"The specified version {0} is not a valid version id. Allowed values are between "
				"1 and 2^31-1 and the string latest."
			).format(shown(value))
		)
	return number


def pretty(value: Any) -> str:
	"""Returns JSON indented for reading in Desk."""
	return json.dumps(value, indent=1, ensure_ascii=False)


def text_field(value: Any, param: str, doctype: str, fieldname: str) -> str | None:
	"""Returns a free text sent for a field (None when absent), refusing what its column cannot hold.

	Raises InvalidSchemaError (42201) naming the limit and the length sent, before anything is
	written: otherwise an object fails in the database driver (500) and an overlong text fails
	Frappe's length check (417) or, in a text column, the database (500). The length measured is
	what Frappe keeps: its sanitizing escapes markup, lengthening the text after its own check.
	"""
	if value is None or value == "":
		return None
	if not isinstance(value, str):
		raise InvalidSchemaError(_("{0} must be a text, not {1}.").format(param, shown(value)))
	stored = sanitize_html(value) if has_markup(value) else value
	column, limit = column_limit(doctype, fieldname)
	if column in TEXT_COLUMN_BYTES:
		size, unit = len(stored.encode()), _("bytes (UTF-8)")
	else:
		size, unit = len(stored), _("characters")
	if size > limit:
		escaped = _(" once its markup is escaped") if stored != value else ""
		raise InvalidSchemaError(
			_("{0} is too long: {1} {2}{3}, but at most {4} fit. Shorten it.").format(
				param, size, unit, escaped, limit
			)
		)
	return value


def column_limit(doctype: str, fieldname: str) -> tuple[str, int]:
	"""Returns the column type of a field and how much it holds: characters (varchar) or bytes (text)."""
	df = frappe.get_meta(doctype).get_field(fieldname)
	column, default_length = frappe.db.type_map[df.fieldtype]
	if column in TEXT_COLUMN_BYTES:
		return column, TEXT_COLUMN_BYTES[column]
	return column, int(df.get("length") or 0) or int(default_length or frappe.db.VARCHAR_LEN)


def shown(value: Any) -> str:
	"""Returns a value sent, for a message: a text or number as written (cut short), else its JSON type.

	Never repr() of an object or array: one nested a thousand levels makes repr() recurse past
	the stack, and a long one would fill the message.
	"""
	if isinstance(value, str):
		return repr(value if len(value) <= SHOWN_CHARACTERS else value[: SHOWN_CHARACTERS - 3] + "...")
	if value is None or isinstance(value, bool | int | float):
		return json.dumps(value)
	if isinstance(value, dict):
		return _("an object")
	if isinstance(value, list | tuple):
		return _("an array")
	return type(value).__name__
