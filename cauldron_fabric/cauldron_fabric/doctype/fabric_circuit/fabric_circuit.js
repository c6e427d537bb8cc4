// Fabric Circuit: read-only; a manager can close a circuit with Reset.

frappe.ui.form.on("Fabric Circuit", {
	refresh(frm) {
		frm.disable_save();
		if (frm.doc.state !== "closed" && frappe.user.has_role(["System Manager", "Fabric Manager"])) {
			frm.add_custom_button(__("Reset"), async () => {
				await frm.call({ method: "reset", doc: frm.doc });
				frm.reload_doc();
			});
		}
	},
});
