"""Event Subject: one event type of the schema registry, its compatibility mode and its versions."""

from __future__ import annotations

from frappe.model.document import Document

from cauldron_fabric.registry.subjects import check_mode, check_subject_name
from cauldron_fabric.registry.versions import delete_subject_versions


class EventSubject(Document):
	def validate(self) -> None:
		self.subject = check_subject_name(self.subject)
		if self.compatibility:
			self.compatibility = check_mode(self.compatibility).value

	def on_trash(self) -> None:
		delete_subject_versions(self.name)
