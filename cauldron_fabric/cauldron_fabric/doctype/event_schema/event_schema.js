// Event Schema: check a new version against earlier ones before registering it; start the next one.

frappe.ui.form.on("Event Schema", {
	refresh(frm) {
		frm.set_df_property("json_schema", "read_only", frm.is_new() ? 0 : 1);
		if (frm.is_new()) {
			frm.add_custom_button(__("Check compatibility"), () => frm.events.check_compatibility(frm));
			return;
		}
		frm.set_intro(
			__("Version {0} of {1} is registered and cannot change. Events checked against it carry {2}.", [
				frm.doc.version,
				frappe.utils.escape_html(frm.doc.subject),
				`<code>${frappe.utils.escape_html(frm.doc.data_schema || "")}</code>`,
			]),
			"blue"
		);
		frm.add_custom_button(__("New version"), () => {
			// Not frappe.new_doc: it copies only Link, Data and Select values, so the schema,
			// the description and the examples would be lost.
			const doc = frappe.model.get_new_doc("Event Schema");
			Object.assign(doc, {
				subject: frm.doc.subject,
				json_schema: frm.doc.json_schema,
				owner_team: frm.doc.owner_team,
				owner_user: frm.doc.owner_user,
				description: frm.doc.description,
				examples: frm.doc.examples,
			});
			frappe.set_route("Form", "Event Schema", doc.name);
		});
	},

	async check_compatibility(frm) {
		if (!frm.doc.subject || !frm.doc.json_schema) {
			frappe.msgprint(__("Pick the subject and write the JSON Schema first."));
			return;
		}
		const { message } = await frappe.call({
			method: "cauldron_fabric.api.schemas.check_compatibility",
			args: { subject: frm.doc.subject, schema: frm.doc.json_schema },
			freeze: true,
		});
		const esc = frappe.utils.escape_html;
		const checked = message.checkedVersions.length
			? __("Checked under {0} against version(s) {1}.", [message.mode, message.checkedVersions.join(", ")])
			: __("Nothing to check against: this would be the first version (mode {0}).", [message.mode]);
		const list = (items) =>
			`<ul>${items
				.map((r) => `<li><code>${esc(r.path)}</code>: ${esc(r.message)} <span class="text-muted">[${esc(r.rule)}]</span></li>`)
				.join("")}</ul>`;
		let html = `<p>${checked}</p>`;
		if (message.reasons.length) html += `<p>${__("Breaking changes")}:</p>${list(message.reasons)}`;
		if (message.changes.length) html += `<p>${__("Compatible changes")}:</p>${list(message.changes)}`;
		frappe.msgprint({
			title: message.is_compatible ? __("Compatible") : __("Not compatible"),
			indicator: message.is_compatible ? "green" : "red",
			message: html,
		});
	},
});
