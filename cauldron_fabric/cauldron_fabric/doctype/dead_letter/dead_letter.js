// Dead Letter: Retry puts the event back in play through its source; Discard gives up on it.

frappe.ui.form.on("Dead Letter", {
	refresh(frm) {
		frm.disable_save();
		if (!frappe.user.has_role(["System Manager", "Fabric Manager"])) {
			return;
		}
		if (["Dead", "Retrying"].includes(frm.doc.status)) {
			frm.add_custom_button(__("Retry"), async () => {
				try {
					await frm.call({ method: "retry", doc: frm.doc, freeze: true });
				} catch {
					// Refused (e.g. its subscription was deleted): Frappe has shown why, and an
					// uncaught rejection would only add an error to the browser console.
					return;
				}
				// A delivery's letter is queued for its subscription again; a consumer's goes back to its group.
				const message =
					frm.doc.source_type === "Consumer"
						? __("Sent back to consumer group {0}", [frm.doc.consumer_group])
						: __("Queued again for its subscription");
				frappe.show_alert({ message, indicator: "green" });
				frm.reload_doc();
			}).addClass("btn-primary");
		}
		if (["Dead", "Retrying"].includes(frm.doc.status)) {
			frm.add_custom_button(__("Discard"), () => {
				frappe.prompt(
					{ fieldname: "note", fieldtype: "Small Text", label: __("Why (kept with the letter)") },
					async ({ note }) => {
						await frm.call({ method: "discard", doc: frm.doc, args: { note } });
						frm.reload_doc();
					},
					__("Discard dead letter"),
					__("Discard")
				);
			});
		}
		if (frm.doc.source_type === "Delivery" && frm.doc.reference) {
			frm.add_custom_button(__("Delivery"), () => frappe.set_route("Form", "Event Delivery", frm.doc.reference));
		}
	},
});
