frappe.listview_settings["Event Delivery"] = {
	add_fields: ["status", "last_error"],
	get_indicator(doc) {
		const colors = { Pending: "orange", Delivered: "green", Dead: "red", Discarded: "gray" };
		return [__(doc.status), colors[doc.status] || "gray", "status,=," + doc.status];
	},
};
