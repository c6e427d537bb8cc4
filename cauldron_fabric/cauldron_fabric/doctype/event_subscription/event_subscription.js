// Event Subscription: recent deliveries, failures and latency; signing secret; test event.

const MANAGERS = ["System Manager", "Fabric Manager"];

frappe.ui.form.on("Event Subscription", {
	refresh(frm) {
		frm.events.render_stats(frm);
		if (frm.doc.problem) {
			// Stored before a stricter version: its events become dead letters until it is fixed.
			frm.set_intro(
				__("This subscription no longer compiles: its events become dead letters until you fix and save it, then retry them."),
				"red"
			);
		} else if (frm.doc.disabled_reason && !frm.doc.enabled) {
			// A worker disabled it (its receiver answered 410 Gone): say why, and what to do.
			frm.set_intro(frappe.utils.escape_html(frm.doc.disabled_reason), "orange");
		}
		if (frm.is_new() || !frappe.user.has_role(MANAGERS)) {
			return;
		}
		frm.add_custom_button(__("Deliveries"), () =>
			frappe.set_route("List", "Event Delivery", { subscription: frm.doc.name })
		);
		frm.add_custom_button(__("Dead Letters"), () =>
			frappe.set_route("List", "Dead Letter", { subscription: frm.doc.name, status: "Dead" })
		);
		frm.add_custom_button(__("Send test event"), async () => {
			const { message } = await frappe.call({
				method: "cauldron_fabric.api.subscriptions.send_test_event",
				args: { subscription: frm.doc.name },
			});
			frappe.show_alert({ message: __("Test event {0} queued", [message.eventId]), indicator: "green" });
			setTimeout(() => frm.events.render_stats(frm), 2000);
		});
		if (frm.doc.destination_type === "Webhook") {
			frm.add_custom_button(
				__("Show signing secret"),
				async () => {
					const { message } = await frappe.call({
						method: "cauldron_fabric.api.subscriptions.reveal_secret",
						args: { subscription: frm.doc.name },
					});
					frappe.msgprint({
						title: __("Signing secret"),
						message: `<p>${__("Give it to the receiver to verify the webhook-signature header (Standard Webhooks).")}</p>
							<pre>${frappe.utils.escape_html(message.secret || "")}</pre>`,
					});
				},
				__("Secret")
			);
			frm.add_custom_button(
				__("Rotate secret"),
				async () => {
					const { message } = await frappe.call("cauldron_fabric.api.subscriptions.new_secret");
					const current = (await frappe.call({
						method: "cauldron_fabric.api.subscriptions.reveal_secret",
						args: { subscription: frm.doc.name },
					})).message.secret;
					// Both sign until the old one is removed, so receivers can switch without a gap.
					frm.set_value("webhook_secret", `${message.secret} ${current || ""}`.trim());
					frappe.show_alert(__("New secret added; save, update the receiver, then remove the old one."));
				},
				__("Secret")
			);
		}
	},

	async render_stats(frm) {
		const wrapper = frm.get_field("delivery_stats").$wrapper;
		if (frm.is_new()) {
			wrapper.html(`<p class="text-muted">${__("Deliveries show here once the subscription is saved.")}</p>`);
			return;
		}
		const { message } = await frappe.call({
			method: "cauldron_fabric.api.subscriptions.get_delivery_stats",
			args: { subscription: frm.doc.name },
			type: "GET",
		});
		const esc = frappe.utils.escape_html;
		const counts = message.counts;
		const latency = message.latencyMs;
		const ms = (v) => (v === null || v === undefined ? "–" : `${v} ms`);
		const rows = (list) =>
			list.length
				? list
						.map(
							(d) => `<tr><td><a href="/app/event-delivery/${d.name}">${d.name}</a></td>
							<td>${esc(d.event_type || "")}</td><td>${esc(d.status)}</td><td>${d.attempts}</td>
							<td>${d.last_status_code || ""}</td><td>${ms(d.last_latency_ms ? Math.round(d.last_latency_ms) : null)}</td>
							<td>${esc((d.last_error || "").slice(0, 200))}</td></tr>`
						)
						.join("")
				: `<tr><td colspan="7" class="text-muted">${__("None")}</td></tr>`;
		const head = `<thead><tr><th>#</th><th>${__("Event")}</th><th>${__("Status")}</th><th>${__("Attempts")}</th>
			<th>${__("HTTP")}</th><th>${__("Latency")}</th><th>${__("Error")}</th></tr></thead>`;
		wrapper.html(`
			<p>${__("Last {0} hours", [message.hours])}: ${__("delivered")} <b>${counts.Delivered || 0}</b>,
			${__("pending")} <b>${counts.Pending || 0}</b>, ${__("dead")} <b>${counts.Dead || 0}</b>,
			${__("discarded")} <b>${counts.Discarded || 0}</b>.
			${__("Latency")}: p50 ${ms(latency.p50)}, p95 ${ms(latency.p95)}, max ${ms(latency.max)}.</p>
			<h6>${__("Latest deliveries")}</h6>
			<table class="table table-bordered table-sm">${head}<tbody>${rows(message.recent)}</tbody></table>
			<h6>${__("Latest failures")}</h6>
			<table class="table table-bordered table-sm">${head}<tbody>${rows(message.failures)}</tbody></table>`);
	},
});
