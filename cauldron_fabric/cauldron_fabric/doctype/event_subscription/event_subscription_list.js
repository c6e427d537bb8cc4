// Event Subscription list: a subscription that no longer compiles, or that its receiver's 410 Gone
// disabled, stands out from enabled and disabled ones.

frappe.listview_settings["Event Subscription"] = {
	add_fields: ["enabled", "problem", "disabled_reason"],
	get_indicator(doc) {
		if (doc.problem) {
			return [__("Does not compile"), "red", "problem,is,set"];
		}
		if (!doc.enabled && doc.disabled_reason) {
			return [__("Receiver gone"), "orange", "disabled_reason,is,set"];
		}
		return doc.enabled ? [__("Enabled"), "green", "enabled,=,1"] : [__("Disabled"), "gray", "enabled,=,0"];
	},
};
