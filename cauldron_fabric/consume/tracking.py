"""Tracking on the site's database: the Processed Event DocType, in the transaction of the handler.

Handlers write through ``frappe.db`` as usual; the processed mark is inserted on the same
connection before they run and committed with their changes by ``frappe.db.commit()``, with
the replies to a request written onto it (the Processed Event's *Replies kept*).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import frappe
from frappe.utils import now_datetime

from cauldron_fabric.consume.handlers import UNIT_SAVEPOINT
from cauldron_fabric.core.consumer.messages import InboundMessage
from cauldron_fabric.core.consumer.ports import TrackingStore
from cauldron_fabric.core.consumer.tracking_sql import (
	TrackingUnavailable,
	already_marked,
	insert_mark_sql,
	keep_replies_sql,
	kept_replies_sql,
	mark_values,
	replies_from_json,
	replies_json,
)
from cauldron_fabric.core.envelope import Envelope
from cauldron_fabric.core.sqlsession import is_connection_error, is_transient_error
from cauldron_fabric.emit.context import caused_by
from cauldron_fabric.emit.watch import watch_writes
from cauldron_fabric.services.retention import CHUNK, purge, retention_cutoff
from cauldron_fabric.services.sitedb import reconnect

DOCTYPE = "Processed Event"
INSERT_MARK = insert_mark_sql()
KEEP_REPLIES, KEPT_REPLIES = keep_replies_sql(), kept_replies_sql()


class FrappeTrackingStore(TrackingStore):
	"""Processed marks in ``tabProcessed Event`` through the site's ``frappe.db`` connection."""

	def __init__(self):
		self._broken = False
		self._event: Envelope | None = None
		# Each event's unit of work is a savepoint, set before the handler's first document hook.
		watch_writes()

	@property
	def transaction(self):
		"""Returns ``frappe.db``: handlers use the ORM, which writes in this transaction."""
		return frappe.db

	def begin(self) -> None:
		"""Starts from a clean transaction, reconnecting after a lost connection."""
		if self._broken:
			self._reconnect()
		self._event = None
		try:
			frappe.db.rollback()
		except Exception as exc:
			# The connection died while idle (KILL, wait_timeout): reconnect instead of failing
			# the event, which would dead-letter a healthy message.
			if not (is_connection_error(exc)):
				raise
			self._reconnect()
			frappe.db.rollback()

	def _reconnect(self) -> None:
		try:
			reconnect()
		except Exception as exc:
			raise TrackingUnavailable(f"The site's database is still unreachable: {exc}.") from exc
		self._broken = False

	def claim(self, group: str, envelope: Envelope, message: InboundMessage | None = None) -> bool:
		"""Inserts the mark; False when the group already processed the event."""
		with self._lost_is_unavailable():
			try:
				frappe.db.sql(
					INSERT_MARK, mark_values(group, envelope, message, frappe.session.user, now_datetime())
				)
			except Exception as exc:
				if already_marked(exc, group, envelope):
					return False
				raise
			frappe.db.savepoint(UNIT_SAVEPOINT)
			self._event = envelope
			return True

	def keep_replies(self, group: str, event_id: str, replies: Sequence[Envelope]) -> None:
		"""Writes the replies onto the mark claimed in this transaction."""
		with self._lost_is_unavailable():
			frappe.db.sql(KEEP_REPLIES, (replies_json(replies), group, event_id))

	def kept_replies(self, group: str, event_id: str) -> list[Envelope]:
		"""Reads the replies committed with the group's mark of the event."""
		with self._lost_is_unavailable():
			rows = frappe.db.sql(KEPT_REPLIES, (group, event_id))
		self.rollback()  # a fresh read next time
		return replies_from_json(rows[0][0]) if rows else []

	@contextmanager
	def _lost_is_unavailable(self, when: str = ""):
		"""Turns a lost connection into TrackingUnavailable (reconnecting at the next begin), and
		so a statement the database refused for now (the site's read-only mode during a
		maintenance or an update, a deadlock, a full disk: see core.sqlsession.TRANSIENT), as the
		SQL stores' sessions do: the events wait, they are not refused."""
		try:
			yield
		except TrackingUnavailable:
			raise  # (another member holds the event: already_marked says so)
		except Exception as exc:
			if is_connection_error(exc):
				self._broken = True
				raise TrackingUnavailable(f"Lost the site's database{when}: {exc}.") from exc
			if is_transient_error(exc):
				raise TrackingUnavailable(
					f"The site's database refused a statement for now{when} (read-only, a deadlock, a "
					f"full disk): {exc}"
				) from exc
			raise

	def commit(self) -> None:
		"""Commits the handler's changes and the mark (after-commit hooks wake the relays)."""
		event, self._event = self._event, None
		with self._lost_is_unavailable(" at commit"):
			# Events recorded at commit (child rows changed on their own, caught db_sets) are the
			# handler's too: they carry the consumed event as cause and stay in its conversation.
			if event is not None:
				with caused_by(event.id, event.metadata.correlation_id):
					frappe.db.commit()
			else:
				frappe.db.commit()

	def rollback(self) -> None:
		"""Rolls back; never raises."""
		try:
			frappe.db.rollback()
		except Exception:
			self._broken = True

	def is_processed(self, group: str, event_id: str) -> bool:
		"""Tells whether the group has a committed mark for the event."""
		return bool(frappe.db.exists(DOCTYPE, {"consumer_group": group, "event_id": event_id}))


def purge_processed_events(chunk: int = CHUNK) -> int:
	"""Deletes the Processed Events older than *Keep processed marks for (days)*, in committed chunks.

	A message redelivered after its mark is gone is handled again: the setting outlasts any
	redelivery (the topics' retention plus the retry delays). Its 0 keeps every mark.
	"""
	cutoff = retention_cutoff("processed_event_retention_days")
	if cutoff is None:
		return 0
	# modified: the index every Frappe table has; a mark is written once (its replies with it).
	return purge(f"tab{DOCTYPE}", (), "modified", cutoff, chunk)
