// Fabric Circuit: read-only; a manager can close a circuit with Reset. Its state's indicator in
// the form's head comes from the list settings' get_indicator (fabric_circuit_list.js).

frappe.ui.form.on("Fabric Circuit", {
	refresh(frm) {
		frm.disable_save();
		// A circuit lives in Redis, made by failed requests: nobody created or edited it, and it
		// has no timeline or comments (Frappe showed the viewer as its creator).
		frm.sidebar && frm.sidebar.sidebar.find(".created-by, .modified-by").addClass("hide");
		frm.footer && frm.footer.wrapper.addClass("hide");
		if (frm.doc.state !== "closed" && frappe.user.has_role(["System Manager", "Fabric Manager"])) {
			frm.add_custom_button(__("Reset"), async () => {
				// Not frm.call: run_doc_method compares the form's "modified" with the stored one,
				// and a circuit (virtual, kept in Redis) has none, so it failed with a Server Error.
				await frappe.call(
					frm.doc.kind === "Webhook endpoint"
						? {
								method: "cauldron_fabric.cauldron_fabric.doctype.fabric_circuit.fabric_circuit.reset_webhook_circuit",
								args: { endpoint: frm.doc.name },
						  }
						: { method: "cauldron_fabric.api.requests.reset_circuit", args: { target: frm.doc.name } }
				);
				// A reset circuit is forgotten (it is closed, with no failures to show): back to the list.
				frappe.show_alert({ message: __("Circuit of {0} closed", [frm.doc.name]), indicator: "green" });
				frappe.set_route("List", "Fabric Circuit");
			});
		}
	},
});
