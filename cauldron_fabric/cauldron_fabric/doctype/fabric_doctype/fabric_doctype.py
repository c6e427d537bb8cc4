from frappe.model.document import Document


class FabricDocType(Document):
	"""A DocType in one of Fabric Settings' allow or deny lists."""
