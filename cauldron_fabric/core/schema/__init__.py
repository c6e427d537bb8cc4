"""The schema registry's framework-free core: compatibility, validation, catalog, documentation, types.

What the Frappe layer calls:

* ``check_schema(schema)``: is it a usable JSON Schema (draft 2020-12 or draft-07)?
* ``check_compatibility(new, previous, mode)``: the dry run, every reason a change breaks readers;
  refuse with ``IncompatibleSchema(subject, result)`` when it is not compatible.
* ``DEFAULT_CACHE.get(subject, version, schema)``, ``validate_envelope(...)``,
  ``payload_violations(...)``: validation with compiled validators cached per version.
* ``data_schema_uri(subject, version)``: the envelope's ``dataSchema`` reference.
* ``load_catalog()``: the version-1 schemas of every event of the source document's section 6.
* ``document_event_schemas(doctype, fields, child_tables)``: schemas derived from a DocType.
* ``asyncapi_document(entries, topic_of)``: the AsyncAPI 3.0 document.
* ``python_source`` / ``typescript_source`` / ``write_sources``: generated types.

Nothing here imports ``frappe``.
"""

from cauldron_fabric.core.schema.asyncapi import asyncapi_document
from cauldron_fabric.core.schema.catalog import CatalogEntry, catalog_entry, load_catalog
from cauldron_fabric.core.schema.codegen import python_source, typescript_source, write_sources
from cauldron_fabric.core.schema.compatibility import (
	DEFAULT_MODE,
	CompatibilityMode,
	CompatibilityResult,
	Reason,
	check_compatibility,
	parse_mode,
)
from cauldron_fabric.core.schema.dialect import check_schema
from cauldron_fabric.core.schema.doctype_schema import (
	doctype_schema,
	document_event_schema,
	document_event_schemas,
)
from cauldron_fabric.core.schema.errors import IncompatibleSchema, InvalidSchema, SchemaViolation, Violation
from cauldron_fabric.core.schema.identity import schema_fingerprint, with_registry_id
from cauldron_fabric.core.schema.validation import (
	DEFAULT_CACHE,
	CompiledSchema,
	ValidatorCache,
	data_schema_uri,
	parse_data_schema_uri,
	payload_violations,
	validate_envelope,
	validate_payload,
)

__all__ = [
	"DEFAULT_CACHE",
	"DEFAULT_MODE",
	"CatalogEntry",
	"CompatibilityMode",
	"CompatibilityResult",
	"CompiledSchema",
	"IncompatibleSchema",
	"InvalidSchema",
	"Reason",
	"SchemaViolation",
	"ValidatorCache",
	"Violation",
	"asyncapi_document",
	"catalog_entry",
	"check_compatibility",
	"check_schema",
	"data_schema_uri",
	"doctype_schema",
	"document_event_schema",
	"document_event_schemas",
	"load_catalog",
	"parse_data_schema_uri",
	"parse_mode",
	"payload_violations",
	"python_source",
	"schema_fingerprint",
	"typescript_source",
	"validate_envelope",
	"validate_payload",
	"with_registry_id",
	"write_sources",
]
