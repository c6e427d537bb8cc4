frappe.listview_settings["Event Log"] = {
	add_fields: ["status", "last_error"],
	get_indicator(doc) {
		const colors = { Pending: "orange", Published: "green", Recorded: "blue", Failed: "red", Invalid: "purple" };
		return [__(doc.status), colors[doc.status] || "gray", "status,=," + doc.status];
	},
};
