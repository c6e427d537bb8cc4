// Event Subject: the mode new versions are checked under, and a shortcut to the next version.

frappe.ui.form.on("Event Subject", {
	async refresh(frm) {
		if (frm.is_new()) return;
		if (!frm.doc.compatibility) {
			const mode = await frappe.db.get_single_value("Fabric Settings", "default_compatibility");
			frm.set_intro(__("Follows the default compatibility mode of Fabric Settings: {0}.", [mode || "BACKWARD"]), "blue");
		}
		if (frm.doc.origin === "DocType") {
			frm.dashboard.add_comment(
				__("Derived from DocType {0}: a new version is registered whenever its fields change.", [
					frappe.utils.escape_html(frm.doc.reference_doctype || ""),
				]),
				"blue",
				true
			);
		}
		frm.add_custom_button(__("New version"), async () => {
			const values = { subject: frm.doc.name };
			if (frm.doc.latest_version) {
				const { message } = await frappe.call({
					method: "cauldron_fabric.api.schemas.get_version",
					args: { subject: frm.doc.name, version: "latest" },
					type: "GET",
				});
				Object.assign(values, {
					json_schema: JSON.stringify(JSON.parse(message.schema), null, 1),
					owner_team: message.owner.team,
					owner_user: message.owner.user,
					description: message.description,
				});
			}
			// Not frappe.new_doc: it copies only Link, Data and Select values, so the schema and
			// the description would be lost.
			const doc = frappe.model.get_new_doc("Event Schema");
			Object.assign(doc, values);
			frappe.set_route("Form", "Event Schema", doc.name);
		});
		frm.add_custom_button(__("Event catalog"), () => window.open("/event-catalog#" + encodeURIComponent(frm.doc.name)));
	},
});
