"""Event Schema: one registered version of an event type's JSON Schema, immutable once saved.

Registering checks the schema, its examples and its compatibility with earlier versions under
the subject's mode, and numbers it; all of that lives in ``cauldron_fabric.registry.versions``.
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.model.document import Document

from cauldron_fabric.registry import versions
from cauldron_fabric.registry.errors import shown_in_desk


class EventSchema(Document):
	def validate(self) -> None:
		with shown_in_desk():
			if self.is_new():
				versions.prepare_version(self)
			else:
				versions.refuse_published_changes(self)
		self.validate_replacement()

	def validate_replacement(self) -> None:
		if self.status != "Deprecated":
			self.replaced_by = None
		elif self.replaced_by and str(self.replaced_by) == str(self.name):
			frappe.throw(_("A version cannot replace itself. Pick a later version or another event type."))

	def after_insert(self) -> None:
		versions.version_registered(self)

	def on_trash(self) -> None:
		versions.version_deleted(self)


def on_doctype_update() -> None:
	"""Makes (subject, version) unique, so a version number can never be given twice."""
	frappe.db.add_unique("Event Schema", ["subject", "version"], constraint_name="unique_subject_version")
