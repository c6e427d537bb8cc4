app_name = "cauldron_fabric"
app_title = "Cauldron Fabric"
app_publisher = "Cauldron Fabric developers"
app_description = "Event fabric: transactional outbox to Kafka and RabbitMQ, event log, delivery"
app_email = "fabric@cauldron.invalid"
app_license = "MIT"
export_python_type_annotations = True

# Installation
# ------------
before_install = "cauldron_fabric.install.before_install"
after_install = "cauldron_fabric.install.after_install"
# DocTypes deleted inside a migrate, an install or an uninstall (which add no feed entry): a
# snapshot before, a comparison after. After the app's own after_migrate, which registers the
# catalog's schemas these events are checked against.
before_migrate = [
	"cauldron_fabric.emit.watch.watch_writes",
	"cauldron_fabric.emit.deleted_doctypes.before_migrate",
]
after_migrate = [
	"cauldron_fabric.install.after_migrate",
	"cauldron_fabric.emit.deleted_doctypes.after_migrate",
]
before_app_install = "cauldron_fabric.emit.deleted_doctypes.before_app_install"
after_app_install = "cauldron_fabric.emit.deleted_doctypes.after_app_install"
before_app_uninstall = "cauldron_fabric.emit.deleted_doctypes.before_app_uninstall"
# Uninstalling the app itself: nothing is recorded while Frappe deletes its DocTypes.
before_uninstall = "cauldron_fabric.emit.policy.leave_site"
after_app_uninstall = "cauldron_fabric.emit.deleted_doctypes.after_app_uninstall"

# Requests and jobs: correlation ids in and out (a job continues its enqueuer's, see
# emit/context.py); savepoints followed from the start (a rollback to one also drops what the
# fabric holds for the commit since, see emit/held.py); writes without document hooks
# recorded (emit/set_values.py). Bench commands wrap them on their own (emit/watch.py).
# ------------------------------------
before_request = [
	"cauldron_fabric.emit.watch.watch_writes",
	"cauldron_fabric.emit.context.read_correlation_header",
]
before_job = [
	"cauldron_fabric.emit.watch.watch_writes",
	"cauldron_fabric.emit.context.continue_enqueuing_context",
]
after_request = [
	"cauldron_fabric.emit.context.write_correlation_header",
	"cauldron_fabric.api.ratelimit.write_retry_after",
]

# Sessions
# --------
on_login = "cauldron_fabric.emit.session.on_login"
on_logout = "cauldron_fabric.emit.session.on_logout"

# The Role Permissions Manager changes Custom DocPerm rows, and the User Permission list's
# Add / Update and Clear delete User Permissions, without document hooks: these wrap their
# methods to record those changes as system.change (see emit/permissions.py).
override_whitelisted_methods = {
	**{
		f"frappe.core.page.permission_manager.permission_manager.{name}": (
			f"cauldron_fabric.emit.permissions.{name}"
		)
		for name in ("update", "remove", "reset")
	},
	**{
		f"frappe.core.doctype.user_permission.user_permission.{name}": (
			f"cauldron_fabric.emit.permissions.{name}"
		)
		for name in ("add_user_permissions", "clear_user_permissions")
	},
	# Desk's link check tells any reader of a DocType which names exist; every desk user reads
	# Approval Request, whose names must not be told to those who may not see them.
	"frappe.client.validate_link": "cauldron_fabric.approvals.permissions.validate_link",
	# Opening a request answered 403 when hidden and 404 (or nothing) when missing: the same tell.
	"frappe.client.get": "cauldron_fabric.approvals.permissions.get",
	"frappe.desk.form.load.getdoc": "cauldron_fabric.approvals.permissions.getdoc",
	"frappe.desk.form.load.get_docinfo": "cauldron_fabric.approvals.permissions.get_docinfo",
	**{
		name: "cauldron_fabric.approvals.permissions.run_doc_method"
		for name in (
			"run_doc_method",
			"runserverobj",
			"frappe.handler.run_doc_method",
			"frappe.handler.runserverobj",
		)
	},
	# Frappe counts (and counts assignees) without any permission check, for every DocType: a
	# count filtered on an event's envelope, or on an approver's note, would read it one guess
	# at a time. The sidebar's counts also took SQL in their filters.
	"frappe.client.get_count": "cauldron_fabric.api.counts.get_count",
	"frappe.desk.listview.get_group_by_count": "cauldron_fabric.api.counts.get_group_by_count",
}

# Permissions
# -----------
# Every desk user reads Approval Request (its DocType says so); these narrow that to the
# requests the user may decide or has been shared (see approvals/permissions.py).
has_permission = {"Approval Request": "cauldron_fabric.approvals.permissions.has_request_permission"}
permission_query_conditions = {
	"Approval Request": "cauldron_fabric.approvals.permissions.query_conditions",
	# Its approver rows name the request: listed only for the requests the user may see.
	"Approval Request Approver": "cauldron_fabric.approvals.permissions.approver_query_conditions",
}

# A deleted subscription's deliveries stay readable as its history (they keep its name).
ignore_links_on_delete = ["Event Delivery"]

# Document events
# ---------------
# on_change is the one hook every save path ends with; before_change fires only for db_set,
# which lets on_change tell a db_set from a save.
doc_events = {
	"*": {
		# Inserts under way, for a copy saved by one of their hooks (see emit/inserts.py).
		"before_insert": "cauldron_fabric.emit.inserts.note_insert",
		"before_change": "cauldron_fabric.emit.documents.mark_db_set",
		"on_change": "cauldron_fabric.emit.documents.on_change",
		"after_delete": "cauldron_fabric.emit.documents.after_delete",
		"before_rename": "cauldron_fabric.emit.documents.before_rename",
		"after_rename": "cauldron_fabric.emit.documents.after_rename",
	},
	"Dead Letter": {"on_change": "cauldron_fabric.delivery.dead_letters.discard_delivery"},
	# A user's roles are Has Role rows saved with the User: their changes are system changes too.
	"User": {"on_update": "cauldron_fabric.emit.roles.user_roles_changed"},
	# A disabled Role is taken from every user and Role Profile by a plain delete in its validate.
	"Role": {
		"before_validate": "cauldron_fabric.emit.roles.note_role_holders",
		"on_update": "cauldron_fabric.emit.roles.role_taken_from_holders",
	},
	# Derived event schemas follow their DocType: refreshed before the change commits.
	"DocType": {
		# A name raw SQL met before it was a DocType is one now (emit/sql_writes.py).
		"after_insert": "cauldron_fabric.emit.sql_doctypes.forget_missing_doctypes",
		# Deleted by an import to be stored anew: what its update compares with.
		"before_reload": "cauldron_fabric.emit.documents.note_reloaded",
		"on_update": [
			"cauldron_fabric.registry.doctypes.schema_source_changed",
			# Publishing a new DocType's lifecycle events from outside is refused from now on.
			"cauldron_fabric.api.publish.forget_doctype_domains",
		],
	},
	# Ending all of a user's sessions on a password change runs no logout hook; each session
	# ended leaves a Logout entry in the Activity Log.
	"Activity Log": {"after_insert": "cauldron_fabric.emit.session.on_session_ended"},
	# Deleting a DocType runs none of its hooks; its feed entry (a "Deleted" Comment) is inserted.
	"Comment": {"after_insert": "cauldron_fabric.emit.documents.doctype_deleted"},
	# on_change, not on_update: Desk's "Rename Fieldname" renames a Custom Field with db_set.
	"Custom Field": {
		"on_change": "cauldron_fabric.registry.doctypes.schema_source_changed",
		"after_delete": "cauldron_fabric.registry.doctypes.schema_source_changed",
	},
	"Property Setter": {
		"on_update": "cauldron_fabric.registry.doctypes.schema_source_changed",
		"after_delete": "cauldron_fabric.registry.doctypes.schema_source_changed",
	},
}

# Scheduled tasks
# ---------------
scheduler_events = {
	"cron": {
		"* * * * *": [
			"cauldron_fabric.emit.scheduled.relay_pending_events",
			"cauldron_fabric.delivery.jobs.deliver_due_deliveries",
			"cauldron_fabric.delivery.jobs.fire_subscription_triggers",
		],
		"*/5 * * * *": ["cauldron_fabric.emit.scheduled.emit_heartbeat"],
		"*/2 * * * *": ["cauldron_fabric.approvals.expiry.expire_overdue_requests"],
	},
	# On the long queue: a first purge after retention is switched on can take a while (it
	# deletes in committed chunks, so one cut short by its timeout goes on the next day).
	"daily_long": [
		"cauldron_fabric.emit.scheduled.purge_expired_events",
		"cauldron_fabric.delivery.jobs.purge_settled_deliveries",
		"cauldron_fabric.delivery.jobs.purge_resolved_dead_letters",
		"cauldron_fabric.consume.tracking.purge_processed_events",
	],
}

# Handlers of events: other apps register theirs the same way, by event type pattern
# ("*" one word, "**" any number). Consumers dispatch consumed events to them and
# subscriptions with a handler destination call them.
# ---------------------------------------------------------------------------
fabric_handlers = {
	"agent.approval.requested": ["cauldron_fabric.approvals.requests.create_approval_request"],
}
