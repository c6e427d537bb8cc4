"""Dead Letter: an event a subscription could not deliver or a consumer could not process.

Retry and Discard are whitelisted for POST only (a GET carries no CSRF token, so a link opened
in a manager's browser could call them) and permission-checked; each source type names the
function that knows how to put its event back in play.
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.model.document import Document
from frappe.utils import now_datetime

from cauldron_fabric.api.params import text_param
from cauldron_fabric.api.permissions import require_role
from cauldron_fabric.core.markup import plain

# Source type -> dotted path of ``retry(dead_letter) -> None``, filled by the delivery and
# consumer packages; the function re-queues the event and raises with a clear message if it can't.
RETRY_HANDLERS = {
	"Delivery": "cauldron_fabric.delivery.dead_letters.retry",
	"Consumer": "cauldron_fabric.consume.dead_letters.retry",
}
LOCK_WAIT = 5  # seconds a Retry, Discard or consumer waits for another's on the same letter to end
# The longest note a Discard keeps (its Small Text column takes 64 KB: four bytes a character).
NOTE_LENGTH = 5000


class LetterNotPermitted(frappe.PermissionError):
	"""The user's role may act on dead letters, but their permissions leave this one out."""


class DeadLetter(Document):
	def validate(self) -> None:
		# Letters are filed by insert and resolved by retry/discard (db_set). A save of an existing
		# letter comes from a generic endpoint (REST PUT, set_value, savedocs): it could mark it
		# Discarded without resolved_by, point ``reference`` at another delivery (which the
		# on_change hook then discards) or swap the envelope or subscription a Retry sends.
		if not self.is_new():
			frappe.throw(
				_("Dead letters cannot be edited. Retry or Discard this one instead."),
				frappe.PermissionError,
			)

	@frappe.whitelist(methods=["POST"])
	def retry(self) -> None:
		"""Puts the event back in play through its source, then marks this letter Retried."""
		require_role()
		self.load_locked()
		self.check_letter_permitted()
		if self.status not in ("Dead", "Retrying"):
			frappe.throw(_("Only a dead letter can be retried; this one is {0}.").format(self.status))
		frappe.get_attr(RETRY_HANDLERS[self.source_type])(self)
		self.resolve("Retried", _("Retried"))

	@frappe.whitelist(methods=["POST"])
	def discard(self, note: str | None = None) -> None:
		"""Gives up on the event for good, keeping the letter as a record."""
		require_role()
		kept = discard_note(note)  # a note it cannot keep is refused before the letter is locked
		self.load_locked()
		self.check_letter_permitted()
		if self.status == "Discarded":
			return
		if self.status not in ("Dead", "Retrying"):
			# A retried letter's event is back in play: discarding the letter would reach into
			# the delivery (discard_delivery) and cancel the retry, or a later letter's delivery.
			frappe.throw(
				_(
					"Only a dead letter can be discarded; this one was already {0} and its event is back in play. Discard the newer dead letter if it fails again."
				).format(self.status)
			)
		self.resolve("Discarded", kept)

	def check_letter_permitted(self) -> None:
		"""Refuses a letter the user's permissions leave out (a User Permission naming the letters
		they may act on, an app's permission hook): the role is checked already. A bulk Retry or
		Discard names letters it never opens, so Frappe's own check of a form's document has not
		run for them."""
		if not self.has_permission("write"):
			frappe.throw(
				_(
					"You may not act on Dead Letter {0}: your permissions leave it out. Ask a System Manager to act on it, or to give you access to it."
				).format(self.name),
				LetterNotPermitted,
				title=_("Not permitted"),
			)

	def load_locked(self) -> None:
		"""Reloads this letter as stored, locked until the request ends, its status as last committed.

		The form sends the document with its call (run_doc_method's ``docs``): the client's
		copy, whose group, envelope or reference would be what Retry sends and to whom, or which
		delivery Discard discards; only the stored letter is acted on.

		A consumer's event is sent back before the request commits (with a slow broker, seconds
		before): one that dies again meanwhile must find this letter no longer
		open, or it files no letter of its own. Its consumer waits on this lock instead (see
		consume.dead_letters.record_dead_letter); so does a second Retry of the same letter,
		which then finds it Retried instead of sending the event twice, or is refused after
		``LOCK_WAIT`` seconds, saying why, when that one holds it longer.

		One locking read gives the whole letter as last committed; it is also what resolve's
		db_set compares against (Frappe would read the letter once more for it). A bulk Retry
		read each letter three times, plus its status.
		"""
		stored = self._read_locked()
		if stored is None:
			self._not_found()
		self.update(stored)
		self._doc_before_save = frappe.get_doc({**stored, "doctype": self.doctype})

	def load_doc_before_save(self, *, raise_exception: bool = False) -> None:
		"""Reads the letter as stored for Frappe, locked as load_locked locks it.

		Desk's Retry and Discard send the form's copy (run_doc_method), which Frappe first
		compares with the stored letter (check_if_latest), read FOR UPDATE: behind another
		request's Retry that waited InnoDB's 50 s, then failed with a Server Error.
		"""
		self._doc_before_save = None
		if self.is_new():
			return
		stored = self._read_locked()
		if stored is not None:
			self._doc_before_save = frappe.get_doc({**stored, "doctype": self.doctype})
		elif raise_exception:
			self._not_found()

	def _read_locked(self) -> dict | None:
		"""Returns the letter's row as last committed (None: no such letter), locked until the
		transaction ends; refuses, saying why, when another request holds it ``LOCK_WAIT`` s."""
		try:
			return locked_row(self.name)
		except frappe.QueryTimeoutError:
			frappe.throw(
				_(
					"Another request is retrying or discarding Dead Letter {0} right now. Reload it in a few seconds to see how that ended, then act on it if it is still open."
				).format(self.name)
			)

	def _not_found(self) -> None:
		"""Raises Frappe's own error for a letter that is not stored (HTTP 404)."""
		frappe.throw(_("{0} {1} not found").format(_(self.doctype), self.name), frappe.DoesNotExistError)

	def resolve(self, status: str, note: str) -> None:
		"""Records who resolved the letter, when and how."""
		self.db_set(
			{
				"status": status,
				"resolved_by": frappe.session.user,
				"resolved_at": now_datetime(),
				"resolution_note": note,
			}
		)


def discard_note(note: str | None) -> str:
	"""Returns the note a Discard keeps: the text given, as plain text, or "Discarded"; one that
	is no text or longer than ``NOTE_LENGTH`` is a validation error saying so."""
	# Kept by db_set, past Frappe's sanitizing, in a field the form renders as HTML.
	text = plain(text_param(note, "note")) or ""
	if len(text) > NOTE_LENGTH:
		frappe.throw(
			_("The note is {0} characters long; a discarded letter keeps at most {1}. Shorten it.").format(
				len(text), NOTE_LENGTH
			),
			title=_("Note too long"),
		)
	return text or _("Discarded")


def locked_status(name: str) -> str | None:
	"""Returns a letter's status as last committed (None: no such letter), locked until the
	transaction ends.

	A Retry holds its letter while it sends the event, up to the publish's 15 s with a slow
	broker (a bulk Retry commits each letter once it is sent): the wait is ``LOCK_WAIT``
	seconds, not InnoDB's 50, past which this raises frappe.QueryTimeoutError for the caller to
	say what is going on.
	"""
	found = locked_row(name, "status")
	return found["status"] if found else None


def locked_row(name: str, columns: str = "*") -> dict | None:
	"""Returns ``columns`` of the letter ``name`` as last committed (None: no such letter),
	locked until the transaction ends; raises frappe.QueryTimeoutError after ``LOCK_WAIT`` s."""
	found = frappe.db.sql(
		f"SELECT {columns} FROM `tabDead Letter` WHERE name = %s FOR UPDATE WAIT {LOCK_WAIT}",
		(name,),
		as_dict=True,
	)
	return found[0] if found else None


def on_doctype_update() -> None:
	"""Adds the index Retry all matching and the list read letters through (dead ones, oldest or
	newest first): without it each such call scanned and sorted the whole table."""
	frappe.db.add_index("Dead Letter", ["status", "creation"], index_name="fabric_dead_letter_status")
