// Approval Request: approvers decide with Approve or Reject; a comment goes to the agent.

frappe.ui.form.on("Approval Request", {
	refresh(frm) {
		frm.disable_save();
		if (!frm.doc.__onload || !frm.doc.__onload.can_decide) {
			return;
		}
		const decide = (method, label, comment_required) => {
			frappe.prompt(
				{ fieldname: "comment", fieldtype: "Small Text", label: __("Comment for the agent"), reqd: comment_required },
				async ({ comment }) => {
					await frappe.call({
						method: `cauldron_fabric.api.approvals.${method}`,
						args: { name: frm.doc.name, comment },
						freeze: true,
					});
					frappe.show_alert({ message: __("{0}: the agent is told", [label]), indicator: "green" });
					frm.reload_doc();
				},
				label,
				label
			);
		};
		frm.add_custom_button(__("Approve"), () => decide("approve", __("Approve"), false)).addClass("btn-primary");
		frm.add_custom_button(__("Reject"), () => decide("reject", __("Reject"), true));
	},
});
