from frappe.model.document import Document


class EventSubscriptionHeader(Document):
	pass
