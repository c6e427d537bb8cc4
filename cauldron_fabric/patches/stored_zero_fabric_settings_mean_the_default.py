"""A 0 stored in a Fabric Settings number meant its default: keep that meaning.

Empty number fields are stored as 0, and the relay, delivery workers, consumers and requesters
read 0 as the default. Now a 0 is refused on save, so the 0s stored before are set to the
defaults they behaved as; otherwise the next save of the settings would be refused for a value
the admin never typed.
"""

import frappe

# The defaults the readers used for a stored 0 before this patch, not whatever is default later.
BEHAVED_AS = {
	"topic_partitions": 3,
	"topic_replication": 1,
	"message_timeout_ms": 10000,
	"relay_batch_size": 500,
	"delivery_batch_size": 100,
	"consumer_max_attempts": 5,
	"consumer_crash_limit": 3,
	"request_timeout_seconds": 10,
	"circuit_failure_threshold": 5,
	"circuit_window_seconds": 60,
	"circuit_open_seconds": 30,
}


def execute() -> None:
	# Only stored values change: a field with no row yet is read as its default already, and
	# adding rows to settings never saved would turn their other fields from defaults into 0.
	for fieldname, default in BEHAVED_AS.items():
		frappe.db.sql(
			"""UPDATE `tabSingles` SET `value` = %s WHERE `doctype` = 'Fabric Settings' AND `field` = %s
			AND (`value` IS NULL OR TRIM(`value`) IN ('', '0', '0.0'))""",
			(str(default), fieldname),
		)
	frappe.clear_document_cache("Fabric Settings", "Fabric Settings")
