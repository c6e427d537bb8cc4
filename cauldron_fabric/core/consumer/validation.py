"""Schema checks of consumed events without a registry: the built-in event catalog.

The Frappe layer checks consumed events through the site's schema registry; a consumer running
without Frappe uses the catalog that ships with the fabric. Types the catalog does not know pass.
"""

from __future__ import annotations

from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.schema.catalog import catalog_entry
from cauldron_fabric.core.schema.validation import validate_envelope


def validate_with_catalog(envelope: Envelope) -> Envelope:
	"""Returns the envelope stamped with its catalog schema; raises SchemaViolation when it breaks it."""
	entry = catalog_entry(envelope.type)
	if entry is None:
		return envelope
	return validate_envelope(envelope, entry.schema, entry.version)
