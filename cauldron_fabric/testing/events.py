"""One builder of test events, for the core suite, the Frappe suite and the benchmarks.

Tests that need "a valid event" take it from here rather than spelling out every envelope
field, so a change to the envelope is made in one place. An event that is malformed on purpose
is still built by hand in its test, where the odd field is what the test is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cauldron_fabric.core.envelope import Envelope, EventData, EventMetadata, new_event_id, utc_now_iso

TEST_SITE = "test.localhost"
TEST_SOURCE = f"frappe://{TEST_SITE}"
TEST_USER = "Administrator"


def document_event(
	entity: str = "ToDo",
	entity_id: str = "T-1",
	action: str = "updated",
	payload: Mapping[str, Any] | None = None,
	*,
	type: str | None = None,
	id: str | None = None,
	time: str | None = None,
	source: str = TEST_SOURCE,
	user: str | None = TEST_USER,
	tenant: str | None = TEST_SITE,
	correlation_id: str | None = None,
	causation_id: str | None = None,
) -> Envelope:
	"""Builds a document event the way the Frappe layer does, with what a test varies overridden.

	As on a site, the event gets a fresh id, the current time, the site's ``frappe://`` source,
	its user and site, and a fresh correlation id (the Frappe layer always has one), unless
	given: ``id``, ``time`` and ``correlation_id`` left as None are made new. An event from
	another module (an agent, a consumer's request) overrides ``type`` and ``source`` and passes
	``user=None, tenant=None`` where its sender leaves them out.

	The type is ``<entity>.<action>`` with the entity lower-cased and its spaces made
	underscores, as ``naming.document_event_type`` gives for DocType names; unlike it, other
	characters and actions pass through as they are, so a test can store odd text in the type.
	"""
	return Envelope(
		id=id or new_event_id(),
		type=type or f"{entity.lower().replace(' ', '_')}.{action}",
		source=source,
		time=time or utc_now_iso(),
		data=EventData(entity, entity_id, action, {} if payload is None else payload),
		metadata=EventMetadata(correlation_id or new_event_id(), causation_id, user, tenant),
	)
