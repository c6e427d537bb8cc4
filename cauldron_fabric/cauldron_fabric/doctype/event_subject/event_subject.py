"""Event Subject: one event type of the schema registry, its compatibility mode and its versions."""

from __future__ import annotations

import frappe
from frappe import _
from frappe.model.document import Document

from cauldron_fabric.registry.errors import shown_in_desk
from cauldron_fabric.registry.subjects import check_mode, check_subject_name
from cauldron_fabric.registry.versions import delete_subject_versions
from cauldron_fabric.services.guards import changed_fields

# Kept by the registry (frappe.db.set_value, no validate): the counter is what keeps a version
# number from being given twice, and the origin says whether the subject follows a DocType.
REGISTRY_FIELDS = ("origin", "reference_doctype", "latest_version", "last_assigned_version")


class EventSubject(Document):
	def validate(self) -> None:
		changed = changed_fields(self, REGISTRY_FIELDS)
		if changed:
			frappe.throw(
				_("{0} of a subject are kept by the registry and cannot be edited.").format(
					", ".join(changed)
				),
				frappe.PermissionError,
			)
		with shown_in_desk():
			self.subject = check_subject_name(self.subject)
			if self.compatibility:
				self.compatibility = check_mode(self.compatibility).value

	def on_trash(self) -> None:
		with shown_in_desk():
			delete_subject_versions(self.name)
