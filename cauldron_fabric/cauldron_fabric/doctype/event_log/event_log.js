// Event Log: read-only; failed events can be requeued, and the form says why others cannot.

frappe.ui.form.on("Event Log", {
	refresh(frm) {
		frm.disable_save();
		if (frm.doc.status === "Invalid") {
			frm.set_intro(
				__("Kept as Invalid and never published: {0}. An event cannot be changed, so it cannot be requeued.", [
					frappe.utils.escape_html(frm.doc.last_error || __("its schema refused it")),
				]),
				"orange"
			);
		}
		if (frm.doc.status === "Failed" && frappe.user.has_role(["System Manager", "Fabric Manager"])) {
			frm.add_custom_button(__("Requeue"), () => frm.events.requeue(frm));
		}
	},

	async requeue(frm) {
		const { message } = await frappe.call({
			method: "cauldron_fabric.api.events.requeue",
			args: { event_ids: [frm.doc.event_id] },
		});
		await frm.reload_doc();
		if (message.requeued) {
			frappe.show_alert({ message: __("Requeued: the relay publishes it again"), indicator: "green" });
		} else {
			// A relay retried it, or another manager requeued it, since the form was opened.
			frappe.msgprint({
				title: __("Not requeued"),
				indicator: "orange",
				message: __("This event is {0} now; only Failed events can be requeued.", [__(frm.doc.status)]),
			});
		}
	},
});
