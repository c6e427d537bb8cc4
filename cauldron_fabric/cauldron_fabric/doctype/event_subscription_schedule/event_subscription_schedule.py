from frappe.model.document import Document


class EventSubscriptionSchedule(Document):
	pass
