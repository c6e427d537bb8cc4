"""Errors of the schema registry on a site, with Confluent Schema Registry's error codes.

Each is a ``frappe.ValidationError`` (so the change fails and the transaction rolls back) with
the HTTP status and the ``error_code`` a Confluent client expects; the API puts both in the
response body (``{"error_code": 40401, "message": "..."}``).
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import frappe
from frappe import _

from cauldron_fabric.core.errors import PermanentError


class RegistryError(frappe.ValidationError):
	"""A registry request that cannot be served as asked; ``details`` go into the response body."""

	http_status_code = 422
	error_code = 42200

	def __init__(self, message: str, details: dict[str, Any] | None = None):
		super().__init__(message)
		self.message = message
		self.details = details or {}
		self.shown = False  # True once its message is in the message log

	def body(self) -> dict[str, Any]:
		"""Returns the Confluent-style error body: ``error_code``, ``message`` and any details."""
		return {"error_code": self.error_code, "message": self.message, **self.details}


@contextmanager
def shown_in_desk() -> Iterator[None]:
	"""Puts a registry error's message in the message log (as frappe.throw does), then re-raises it.

	Registry errors are raised, not thrown, to keep their HTTP status and Confluent body; Desk
	only shows what is in the message log, so without this a refused save or dry run answers
	422 and the form says nothing.
	"""
	try:
		yield
	except RegistryError as exc:
		if not exc.shown:
			frappe.msgprint(html.escape(exc.message), title=_("Schema registry"), indicator="red")
			exc.shown = True
		raise


class SubjectNotFound(RegistryError):
	"""No subject of that name is registered."""

	http_status_code = 404
	error_code = 40401


class VersionNotFound(RegistryError):
	"""The subject has no version of that number."""

	http_status_code = 404
	error_code = 40402


class SchemaNotFound(RegistryError):
	"""No schema has that id."""

	http_status_code = 404
	error_code = 40403


class IncompatibleSchemaError(RegistryError):
	"""The schema breaks readers or writers of earlier versions under the subject's mode."""

	http_status_code = 409
	error_code = 409


class InvalidSchemaError(RegistryError):
	"""The schema is not a usable JSON Schema, its examples fail it, or its type is not JSON."""

	http_status_code = 422
	error_code = 42201


class InvalidVersion(RegistryError):
	"""A version that is neither a positive number nor "latest"."""

	http_status_code = 422
	error_code = 42202


class InvalidCompatibilityLevel(RegistryError):
	"""A compatibility mode that is not one of the seven."""

	http_status_code = 422
	error_code = 42203


class InvalidSubject(RegistryError):
	"""A subject that is not an event type such as ``sales_invoice.submitted``."""

	http_status_code = 422
	error_code = 42208


class OperationNotPermitted(RegistryError):
	"""An operation the registry refuses, such as changing what a published version says."""

	http_status_code = 422
	error_code = 42205


class EventSchemaViolation(frappe.ValidationError, PermanentError):
	"""An event that fails its registered schema while Fabric Settings say to reject such events.

	Also a PermanentError of the fabric's tree, so callers that refuse FabricErrors (the publish
	API answers them with 422) refuse it the same way.
	"""

	http_status_code = 422
