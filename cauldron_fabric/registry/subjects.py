"""Subjects of the registry (one per event type) and their compatibility modes."""

from __future__ import annotations

import frappe
from frappe import _

from cauldron_fabric.core.envelope import TYPE_PATTERN
from cauldron_fabric.core.errors import ConfigurationError
from cauldron_fabric.core.schema import CompatibilityMode, parse_mode
from cauldron_fabric.emit.held import when_transaction_ends
from cauldron_fabric.registry.errors import InvalidCompatibilityLevel, InvalidSubject, SubjectNotFound
from cauldron_fabric.registry.parsing import shown

SUBJECT = "Event Subject"
CATALOG = "Catalog"
DOCTYPE = "DocType"
REGISTERED = "Registered"


def check_subject_name(subject: str | None) -> str:
	"""Returns the subject trimmed; raises InvalidSubject unless it is an event type (a text)."""
	subject = subject.strip() if isinstance(subject, str) else subject
	if not subject:
		raise InvalidSubject(_("subject is required: the event type, such as sales_invoice.submitted."))
	if not isinstance(subject, str):
		raise InvalidSubject(
			_("subject must be a text, an event type such as sales_invoice.submitted, not {0}.").format(
				shown(subject)
			)
		)
	if not TYPE_PATTERN.match(subject) or len(subject) > 140:
		raise InvalidSubject(
			_(
				"The subject {0} is not an event type. Use lower-case words joined by dots, such as "
				"sales_invoice.submitted (at most 140 characters)."
			).format(shown(subject))
		)
	return subject


def check_mode(value: str | None) -> CompatibilityMode:
	"""Returns the compatibility mode named by ``value``; raises InvalidCompatibilityLevel otherwise."""
	try:
		if value is not None and not isinstance(value, str):
			# parse_mode reads str(value): an object's text is no mode, and a deep one recurses.
			raise ConfigurationError(f"{type(value).__name__} is no compatibility mode")
		return parse_mode(value)
	except ConfigurationError:
		raise InvalidCompatibilityLevel(
			_("Invalid compatibility level {0}. Valid values are {1}.").format(
				shown(value), ", ".join(mode.value for mode in CompatibilityMode)
			)
		) from None


def default_mode() -> CompatibilityMode:
	"""Returns the site-wide mode of Fabric Settings (BACKWARD unless changed)."""
	return parse_mode(frappe.db.get_single_value("Fabric Settings", "default_compatibility"))


def subject_mode(subject: str) -> CompatibilityMode:
	"""Returns the mode a subject's new versions are checked under: its own, else the default."""
	own = frappe.db.get_value(SUBJECT, subject, "compatibility")
	return parse_mode(own) if own else default_mode()


def own_mode(subject: str) -> str | None:
	"""Returns the mode set on the subject itself (None when it follows the default)."""
	require_subject(subject)
	return frappe.db.get_value(SUBJECT, subject, "compatibility") or None


def require_subject(subject: str, with_versions: bool = False) -> None:
	"""Raises SubjectNotFound (40401) unless the subject exists (and, ``with_versions``, has one left).

	Reading versions asks for one left: Confluent answers 40401, not 40402 (version not found),
	for a subject whose versions were all deleted, as ``list_subjects`` leaves it out.
	"""
	latest = frappe.db.get_value(SUBJECT, subject, "latest_version")
	if latest is None or (with_versions and not latest):
		raise SubjectNotFound(_("Subject {0} not found.").format(repr(subject)))


def lock_subject(subject: str, timeout: int = 30) -> None:
	"""Serialises registrations of one subject until this transaction ends (subject creation included).

	The subject's row lock cannot do it while the row does not exist yet: concurrent inserts of
	a new subject fail on its key or deadlock.
	"""
	key = f"fabric_subject:{frappe.local.site}:{subject}"[:64]
	if not frappe.db.sql("SELECT GET_LOCK(%s, %s)", (key, timeout))[0][0]:
		frappe.throw(_("Another registration of {0} is under way; try again.").format(subject))

	def release() -> None:
		frappe.db.sql("SELECT RELEASE_LOCK(%s)", (key,))

	# Not an after-rollback callback: none runs when a before_commit callback refuses the commit,
	# and the lock would stay until the connection closes.
	when_transaction_ends(release)


def ensure_subject(subject: str, origin: str = REGISTERED, reference_doctype: str | None = None) -> None:
	"""Creates the subject if it is missing; an existing one keeps its origin and mode."""
	if frappe.db.exists(SUBJECT, subject):
		return
	frappe.get_doc(
		{
			"doctype": SUBJECT,
			"subject": subject,
			"origin": origin,
			"reference_doctype": reference_doctype,
		}
	).insert(ignore_permissions=True, ignore_if_duplicate=True)  # a concurrent request created it


def set_subject_mode(subject: str, mode: str | None) -> str | None:
	"""Sets a subject's own mode (creating the subject if needed); empty returns it to the default."""
	subject = check_subject_name(subject)
	value = check_mode(mode).value if mode else None
	ensure_subject(subject)
	doc = frappe.get_doc(SUBJECT, subject)
	doc.compatibility = value
	doc.save(ignore_permissions=True)
	return value


def list_subjects(prefix: str | None = None) -> list[str]:
	"""Returns the subjects that have at least one version, sorted, optionally by prefix."""
	names = frappe.get_all(SUBJECT, filters={"latest_version": (">", 0)}, pluck="name", order_by="name asc")
	return [name for name in names if name.startswith(prefix)] if prefix else names
