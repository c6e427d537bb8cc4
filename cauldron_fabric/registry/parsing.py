"""What callers send the registry, read: schemas, example payloads and version numbers."""

from __future__ import annotations

import json
from typing import Any

from frappe import _

from cauldron_fabric.core.schema import InvalidSchema, check_schema
from cauldron_fabric.registry.errors import InvalidSchemaError, InvalidVersion

MAX_VERSION = 2**31 - 1


def parse_schema(value: Any, trusted: bool = False) -> Any:
	"""Returns the schema as JSON data; raises InvalidSchemaError (42201) naming every defect.

	``trusted`` skips the meta-schema check, for schemas the fabric derived itself.
	"""
	if isinstance(value, str):
		try:
			value = json.loads(value)
		except ValueError as exc:
			raise InvalidSchemaError(_("The schema is not valid JSON: {0}.").format(exc)) from None
	if trusted:
		return value
	try:
		check_schema(value)
	except InvalidSchema as exc:
		raise InvalidSchemaError(
			_("Invalid JSON Schema: {0}. Write a draft 2020-12 (or draft-07) schema.").format(
				"; ".join(exc.problems)
			)
		) from None
	return value


def parse_examples(value: Any) -> list[Any]:
	"""Returns the example payloads as a list; raises InvalidSchemaError when they are not one."""
	if value in (None, ""):
		return []
	if isinstance(value, str):
		try:
			value = json.loads(value)
		except ValueError as exc:
			raise InvalidSchemaError(_("The examples are not valid JSON: {0}.").format(exc)) from None
	if not isinstance(value, list):
		raise InvalidSchemaError(_("The examples must be a JSON list of payloads, such as [{...}]."))
	return value


def parse_version(value: Any) -> int | None:
	"""Returns a version number, or None for "latest" (and -1); raises InvalidVersion (42202)."""
	if value in (None, "", "latest", -1, "-1"):
		return None
	try:
		number = int(str(value).strip())
	except ValueError:
		number = 0
	if not 1 <= number <= MAX_VERSION:
		raise InvalidVersion(
			_(
				"The specified version {0} is not a valid version id. Allowed values are between "
				"1 and 2^31-1 and the string latest."
			).format(repr(value))
		)
	return number


def pretty(value: Any) -> str:
	"""Returns JSON indented for reading in Desk."""
	return json.dumps(value, indent=1, ensure_ascii=False)
