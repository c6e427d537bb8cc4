// Dead Letters: retry or discard the selected ones, or retry every dead one matching the filters.

frappe.listview_settings["Dead Letter"] = {
	// Each status's indicator comes from the DocType's states.
	onload(listview) {
		if (!frappe.user.has_role(["System Manager", "Fabric Manager"])) {
			return;
		}
		// Frappe's list skips a refresh asked with the same arguments as one less than 3 s before
		// (BaseList.no_change): after a Retry or Discard the rows changed though the arguments did
		// not, and a user quick to act right after the list loaded kept seeing them Dead.
		const reload = () => {
			listview.last_args = null;
			listview.refresh();
		};
		// A bulk call over the request's share runs as a job: it answers with the job, and the
		// job's end (a notification with the summary) is announced here.
		frappe.realtime.off("fabric_dead_letters_done");
		frappe.realtime.on("fabric_dead_letters_done", ({ subject }) => {
			frappe.show_alert({ message: subject, indicator: "blue" }, 10);
			reload();
		});
		const report = (title, message) => {
			if (message.job_id) {
				frappe.msgprint({ title, indicator: "blue", message: frappe.utils.escape_html(message.message) });
				return;
			}
			// One line per reason (a broker that is down refuses every letter alike), as the
			// background job's summary gives them.
			const reasons = {};
			for (const f of message.failed) {
				(reasons[f.error] = reasons[f.error] || []).push(f.name);
			}
			const shown = 5;
			const failed = Object.entries(reasons).map(([error, names]) => {
				const listed = names.slice(0, shown).map(frappe.utils.escape_html).join(", ");
				const more = names.length > shown ? __(" and {0} more", [names.length - shown]) : "";
				return `<li><b>${names.length}</b>: ${frappe.utils.escape_html(error)} (${listed}${more})</li>`;
			});
			frappe.msgprint({
				title,
				indicator: failed.length ? "orange" : "green",
				message: __("{0} done.", [message.done]) + (failed.length ? `<ul>${failed.join("")}</ul>` : ""),
			});
			reload();
		};
		const selected = () => listview.get_checked_items().map((d) => d.name);

		listview.page.add_action_item(__("Retry"), async () => {
			const { message } = await frappe.call({
				method: "cauldron_fabric.api.dead_letters.retry",
				args: { names: selected() },
				freeze: true,
			});
			report(__("Retry"), message);
		});
		listview.page.add_action_item(__("Discard"), async () => {
			const { message } = await frappe.call({
				method: "cauldron_fabric.api.dead_letters.discard",
				args: { names: selected() },
				freeze: true,
			});
			report(__("Discard"), message);
		});
		listview.page.add_menu_item(__("Retry all matching"), () => {
			const filters = listview.get_filters_for_args();
			frappe.confirm(__("Retry every dead letter that matches the current filters?"), async () => {
				const { message } = await frappe.call({
					method: "cauldron_fabric.api.dead_letters.retry_matching",
					args: { filters },
					freeze: true,
				});
				report(__("Retry all matching"), message);
			});
		});
	},
};
