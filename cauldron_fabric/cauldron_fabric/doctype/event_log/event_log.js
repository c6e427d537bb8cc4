// Event Log: read-only; failed events can be requeued.

frappe.ui.form.on("Event Log", {
	refresh(frm) {
		frm.disable_save();
		if (frm.doc.status === "Failed" && frappe.user.has_role(["System Manager", "Fabric Manager"])) {
			frm.add_custom_button(__("Requeue"), async () => {
				await frappe.call({
					method: "cauldron_fabric.api.events.requeue",
					args: { event_ids: [frm.doc.event_id] },
				});
				frm.reload_doc();
			});
		}
	},
});
