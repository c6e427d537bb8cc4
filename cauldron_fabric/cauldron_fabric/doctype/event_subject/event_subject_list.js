// Event Subjects: a subject with no compatibility mode of its own follows the default of Fabric Settings.

frappe.listview_settings["Event Subject"] = {
	formatters: {
		compatibility(value) {
			// Frappe shows an empty Select as an empty pill, which read as a missing value.
			if (!value) {
				return `<span class="text-muted ellipsis">${__("Default")}</span>`;
			}
			const mode = frappe.utils.escape_html(value);
			return `<span class="filterable indicator-pill ${frappe.utils.guess_colour(value)} ellipsis"
				data-filter="compatibility,=,${mode}"><span class="ellipsis">${mode}</span></span>`;
		},
	},
};
