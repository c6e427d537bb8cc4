// Event Delivery: read-only; a dead one is retried or discarded from its Dead Letter.

frappe.ui.form.on("Event Delivery", {
	refresh(frm) {
		frm.disable_save();
		if (frm.doc.status === "Dead") {
			frm.add_custom_button(__("Dead Letter"), () =>
				frappe.set_route("List", "Dead Letter", { reference: String(frm.doc.name), source_type: "Delivery" })
			);
		}
	},
});
