"""A 0 stored in a subscription's attempts, delays or timeout meant the default: keep that meaning.

Empty number fields are stored as 0, and the loader read 0 as the default. Now a 0 means 0
(or is refused where it cannot work), so the 0s stored before are set to the defaults they
behaved as; otherwise such a subscription would stop compiling and deliver nothing.
"""

import frappe

# The defaults the loader used for a stored 0 before this patch, not whatever is default later.
BEHAVED_AS = {"max_attempts": 8, "initial_delay": 5, "max_delay": 3600, "webhook_timeout": 10}


def execute() -> None:
	for fieldname, default in BEHAVED_AS.items():
		frappe.db.sql(
			f"UPDATE `tabEvent Subscription` SET `{fieldname}` = %s WHERE `{fieldname}` = 0", (default,)
		)
