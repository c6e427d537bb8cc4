"""Schema checks of consumed events: through the site's schema registry.

``check_consumed`` is the one place the consumer asks; it calls
``cauldron_fabric.registry.recording.check_consumed`` (registered versions, derived DocType
schemas, ``dataSchema`` pinning). On a site whose registry lacks that function it falls back to
the built-in event catalog, so events are never consumed unchecked.
"""

from __future__ import annotations

from collections.abc import Callable

from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.schema.catalog import catalog_entry
from cauldron_fabric.core.schema.errors import SchemaViolation, Violation
from cauldron_fabric.core.schema.validation import data_schema_uri, payload_violations

Check = Callable[[Envelope], tuple[Envelope, list]]


def registry_check() -> Check:
	"""Returns the registry's check of consumed events, or the catalog check without a registry."""
	try:
		from cauldron_fabric.registry.recording import check_consumed as registry_check_consumed
	except ImportError:
		return check_with_catalog
	return registry_check_consumed


def check_consumed(envelope: Envelope) -> tuple[Envelope, list[Violation]]:
	"""Returns the event stamped with the schema it was checked against, and its violations."""
	return registry_check()(envelope)


def validate_consumed(envelope: Envelope) -> Envelope:
	"""Returns the checked event; raises SchemaViolation (a PermanentError) listing every violation."""
	checked, violations = check_consumed(envelope)
	if violations:
		raise SchemaViolation(checked.type, None, [_as_violation(v) for v in violations])
	return checked


def check_with_catalog(envelope: Envelope) -> tuple[Envelope, list[Violation]]:
	"""Checks against the built-in catalog; types it does not know pass unchanged."""
	entry = catalog_entry(envelope.type)
	if entry is None:
		return envelope, []
	payload = dict(envelope.data.payload)
	violations = payload_violations(payload, entry.schema, entry.type, entry.version)
	return envelope.with_schema(data_schema_uri(entry.type, entry.version)), violations


def _as_violation(value) -> Violation:
	if isinstance(value, Violation):
		return value
	return Violation(getattr(value, "path", "$"), getattr(value, "rule", "schema"), str(value))
