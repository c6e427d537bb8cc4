// Fabric Settings: connection tests (Kafka, RabbitMQ), relay status, the built-in deny list.

frappe.ui.form.on("Fabric Settings", {
	refresh(frm) {
		frm.events.render_status(frm);
	},

	async test_connection(frm) {
		if (frm.is_dirty()) {
			await frm.save();
			// frm.save() resolves even when the save is refused; Frappe has said why, and
			// testing the settings saved before would answer for values the form no longer shows.
			if (frm.is_dirty()) return;
		}
		const { message } = await frappe.call({
			method: "cauldron_fabric.api.settings.test_connection",
			freeze: true,
			freeze_message: __("Connecting to Kafka…"),
		});
		frappe.msgprint({
			title: message.ok ? __("Connected") : __("Connection failed"),
			indicator: message.ok ? "green" : "red",
			message: frappe.utils.escape_html(message.summary),
		});
	},

	async test_rabbitmq_connection(frm) {
		if (frm.is_dirty()) {
			await frm.save();
			// frm.save() resolves even when the save is refused; Frappe has said why, and
			// testing the settings saved before would answer for values the form no longer shows.
			if (frm.is_dirty()) return;
		}
		const { message } = await frappe.call({
			method: "cauldron_fabric.api.settings.test_rabbitmq_connection",
			freeze: true,
			freeze_message: __("Connecting to RabbitMQ…"),
		});
		frappe.msgprint({
			title: message.ok ? __("Connected") : __("Connection failed"),
			indicator: message.ok ? "green" : "red",
			message: frappe.utils.escape_html(message.summary),
		});
	},

	async render_status(frm) {
		const { message } = await frappe.call({ method: "cauldron_fabric.api.settings.get_status", type: "GET" });
		const esc = frappe.utils.escape_html;
		const relays = message.relays.length
			? message.relays
					.map(
						(r) => `<tr><td>${esc(r.name)}</td><td>${esc(r.heartbeat)}${r.stale ? " " + __("(silent)") : ""}</td>
						<td>${r.published}</td><td>${r.failed}</td><td>${esc(r.last_error || "")}</td></tr>`
					)
					.join("")
			: `<tr><td colspan="5">${__("No relay has reported. Start one with: bench --site SITE fabric relay")}</td></tr>`;
		const outbox = message.outbox;
		// A count that stopped at its cap says so: "more than 10,000", never a wrong number.
		const count = (n, capped) => (capped ? __("more than {0}", [format_number(n, null, 0)]) : format_number(n, null, 0));
		// Ages as people read them: 708.772 seconds showed as such; now "11 min 49 s".
		const age = (seconds) => {
			let left = Math.round(seconds || 0);
			const parts = [];
			for (const [unit, size] of [[__("d"), 86400], [__("h"), 3600], [__("min"), 60]]) {
				if (left >= size) {
					parts.push(`${Math.floor(left / size)} ${unit}`);
					left %= size;
				}
			}
			if (left || !parts.length) {
				parts.push(`${left} ${__("s")}`);
			}
			return parts.join(" ");
		};
		frm.get_field("relay_status").$wrapper.html(`
			<p>${__("Pending: {0}, failed: {1}, oldest pending: {2}", [
				count(outbox.pending, outbox.pendingCapped),
				count(outbox.failed, outbox.failedCapped),
				age(outbox.oldestPendingSeconds),
			])}</p>
			<table class="table table-bordered table-sm">
				<thead><tr><th>${__("Relay")}</th><th>${__("Heartbeat")}</th><th>${__("Published")}</th>
				<th>${__("Failed")}</th><th>${__("Last error")}</th></tr></thead>
				<tbody>${relays}</tbody>
			</table>`);
		const workers = message.deliveryWorkers.length
			? message.deliveryWorkers
					.map((w) => {
						const overdue = (w.overdue || [])
							.map((o) => __("{0} for {1}: running {2}", [esc(o.destination), esc(o.subscription), age(o.running_seconds)]))
							.join("<br>");
						return `<tr><td>${esc(w.name)}</td><td>${esc(w.heartbeat)}${w.stale ? " " + __("(silent)") : ""}</td>
						<td>${w.delivered}</td><td>${w.retried}</td><td>${w.dead}</td><td>${w.in_flight}</td>
						<td>${overdue}</td><td>${esc(w.last_error || "")}</td></tr>`;
					})
					.join("")
			: `<tr><td colspan="8">${__("No delivery worker has reported. Start one with: bench --site SITE fabric deliver")}</td></tr>`;
		const queue = message.deliveries;
		frm.get_field("relay_status").$wrapper.append(`
			<p>${__("Deliveries pending: {0}, due: {1}, dead: {2}, oldest due for: {3}", [
				count(queue.pending, queue.pendingCapped),
				count(queue.due, queue.dueCapped),
				count(queue.dead, queue.deadCapped),
				age(queue.oldestDueSeconds),
			])}</p>
			<table class="table table-bordered table-sm">
				<thead><tr><th>${__("Delivery worker")}</th><th>${__("Heartbeat")}</th><th>${__("Delivered")}</th>
				<th>${__("Retried")}</th><th>${__("Dead")}</th><th>${__("In flight")}</th><th>${__("Overdue")}</th>
				<th>${__("Last error")}</th></tr></thead>
				<tbody>${workers}</tbody>
			</table>`);
		frm.get_field("default_deny_list").$wrapper.html(
			`<p class="text-muted">${__("Never emitted")}: ${message.defaultDenied.map(esc).join(", ")}</p>`
		);
	},
});
