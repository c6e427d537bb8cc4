// Fabric Circuits: kept in Redis, so the sidebar offers no Assigned To or Created By counts.

// Frappe colours only a field named "status"; a circuit's is "state". Frappe asks get_indicator
// for the form's head too.
const CIRCUIT_STATES = {
	open: [__("Open"), "red"],
	half_open: [__("Half-open"), "orange"],
	closed: [__("Closed"), "green"],
};

frappe.listview_settings["Fabric Circuit"] = {
	get_indicator(doc) {
		const [label, colour] = CIRCUIT_STATES[doc.state] || [doc.state, "gray"];
		return [label, colour, `state,=,${doc.state}`];
	},
	onload(listview) {
		const group_by = listview.list_sidebar && listview.list_sidebar.list_group_by;
		if (!group_by) {
			return;
		}
		// Assignees are counted with a query on the DocType's table, which a virtual DocType does
		// not have: the server refuses with an error meant for API callers. A circuit has no
		// creator. Frappe adds both back whenever the sidebar's filters are edited: drop them on
		// every render.
		const render = group_by.render_group_by_items.bind(group_by);
		group_by.render_group_by_items = () => {
			group_by.group_by_fields = group_by.group_by_fields.filter((f) => !["assigned_to", "owner"].includes(f));
			render();
		};
		group_by.render_group_by_items();
		group_by.setup_dropdown();
	},
};
