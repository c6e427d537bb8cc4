// Event Subscription list: a subscription that no longer compiles stands out from enabled and disabled ones.

frappe.listview_settings["Event Subscription"] = {
	add_fields: ["enabled", "problem"],
	get_indicator(doc) {
		if (doc.problem) {
			return [__("Does not compile"), "red", "problem,is,set"];
		}
		return doc.enabled ? [__("Enabled"), "green", "enabled,=,1"] : [__("Disabled"), "gray", "enabled,=,0"];
	},
};
